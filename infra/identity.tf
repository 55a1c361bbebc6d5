# Firebase Auth on Identity Platform: users sign up and in with email and password; the gateway
# verifies their ID tokens (firebase-admin, project = this project).

resource "google_firebase_project" "default" {
  provider = google-beta
  project  = var.project_id

  depends_on = [google_project_service.apis]
}

resource "google_identity_platform_config" "default" {
  project = var.project_id

  sign_in {
    allow_duplicate_emails = false

    email {
      enabled           = true
      password_required = true
    }
  }

  # Pages allowed to run the sign-in flow: the gateway (which serves the UI) and the UI origin.
  authorized_domains = distinct(concat(
    [
      "localhost",
      "${var.project_id}.firebaseapp.com",
      trimprefix(local.urls.gateway, "https://"),
      split(":", trimprefix(local.ui_origin, "https://"))[0],
    ],
    var.authorized_domains,
  ))

  depends_on = [google_firebase_project.default]
}

# The web app whose public configuration the UI embeds (an API key restricted to Firebase's APIs;
# it identifies the project, it grants nothing by itself).
resource "google_firebase_web_app" "ui" {
  provider        = google-beta
  project         = var.project_id
  display_name    = "Runtune"
  deletion_policy = "DELETE"

  depends_on = [google_firebase_project.default]
}

data "google_firebase_web_app_config" "ui" {
  provider   = google-beta
  project    = var.project_id
  web_app_id = google_firebase_web_app.ui.app_id
}

# The UI's Firebase web configuration: the gateway serves it at /config.json (one UI build for every
# project) and `terraform output firebase_web_config` prints it.
locals {
  firebase_web_config = {
    apiKey     = data.google_firebase_web_app_config.ui.api_key
    authDomain = data.google_firebase_web_app_config.ui.auth_domain
    projectId  = var.project_id
    appId      = google_firebase_web_app.ui.app_id
  }
}
