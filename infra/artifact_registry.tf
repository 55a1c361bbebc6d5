resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:Images hold only the public source and public dependencies, no user data or secrets; Google-managed encryption at rest suffices and a KMS key would add cost and key administration.
  project       = var.project_id
  location      = var.region
  repository_id = var.artifact_repository
  description   = "Runtune images (built by cloudbuild.yaml, tagged by commit SHA)"
  format        = "DOCKER"
  labels        = local.labels

  docker_config {
    # `latest` moves with every build (it is the layer cache of the next one); deployments use SHA tags.
    immutable_tags = false
  }

  cleanup_policy_dry_run = false

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }

  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      tag_state  = "ANY"
      older_than = "2592000s" # 30 days, except the 10 newest versions kept above
    }
  }

  depends_on = [google_project_service.apis]
}

# The build pushes images; nothing else writes to the repository.
resource "google_artifact_registry_repository_iam_member" "build_writer" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.sa["build"].member
}
