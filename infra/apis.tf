locals {
  apis = toset([
    "aiplatform.googleapis.com",           # Vertex AI custom training (multi-GPU and Spot runs)
    "apikeys.googleapis.com",              # the Firebase web app's browser key
    "artifactregistry.googleapis.com",     # images
    "cloudbuild.googleapis.com",           # image builds
    "cloudresourcemanager.googleapis.com", # project IAM
    "cloudtasks.googleapis.com",           # the webhooks' delivery queue
    "compute.googleapis.com",              # the VPC of Direct VPC egress
    "firebase.googleapis.com",             # Firebase project and web app
    "firebaserules.googleapis.com",        # Firestore security rules (deny every client)
    "firestore.googleapis.com",            # metadata
    "iam.googleapis.com",                  # service accounts, custom role
    "iamcredentials.googleapis.com",       # signBlob (signed URLs) and ID tokens
    "identitytoolkit.googleapis.com",      # Firebase Auth / Identity Platform
    "run.googleapis.com",                  # services, the trainer job
    "secretmanager.googleapis.com",        # users' tokens, the engine's Hugging Face token
    "securetoken.googleapis.com",          # Firebase ID token refresh
    "serviceusage.googleapis.com",
    "storage.googleapis.com", # data bucket
  ])
}

resource "google_project_service" "apis" {
  for_each = local.apis

  project = var.project_id
  service = each.value
  # Turning an API off on destroy would break anything else in the project that uses it.
  disable_on_destroy = false
}
