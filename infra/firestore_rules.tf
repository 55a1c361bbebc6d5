# Firestore security rules: deny every client read and write (infra/firestore.rules). The platform
# reaches Firestore only from its servers, whose service accounts IAM authorizes and rules do not
# apply to; the rules close the path the public Firebase web API key would otherwise open.

resource "google_firebaserules_ruleset" "firestore" {
  project = var.project_id

  source {
    files {
      name    = "firestore.rules"
      content = file("${path.module}/firestore.rules")
    }
  }

  # A changed file is a new ruleset; the release moves to it before the old one is deleted (a
  # released ruleset cannot be deleted).
  lifecycle {
    create_before_destroy = true
  }

  depends_on = [google_project_service.apis, google_firestore_database.default]
}

resource "google_firebaserules_release" "firestore" {
  project      = var.project_id
  name         = "cloud.firestore" # the (default) database's release
  ruleset_name = "projects/${var.project_id}/rulesets/${google_firebaserules_ruleset.firestore.name}"
}
