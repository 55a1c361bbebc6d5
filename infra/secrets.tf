# Users' own tokens (Hugging Face, Weights & Biases) are secrets the training service creates at run
# time, named runtune-user-<sha256(uid)[:32]>-<name> (runtune/adapters/secret_manager.py). Terraform
# creates none of them; it limits who may touch them to names with that prefix.

locals {
  user_secret_prefix = "projects/${local.project_number}/secrets/runtune-user-"
  # Accounts that read one user's token (runtune/permissions.py: user_secrets = "read").
  user_secret_readers = toset(["ingest", "trainer"])
}

# The training service manages them with the user_secrets custom role (runtune/custom_roles.json:
# exactly the calls SecretManagerStore makes), only on secrets of that prefix.
resource "google_project_iam_member" "training_user_secrets" {
  project = var.project_id
  role    = google_project_iam_custom_role.runtune["user_secrets"].id
  member  = google_service_account.sa["training"].member

  condition {
    title       = "runtune-user-secrets-only"
    description = "Creating and listing are checked on the project; everything else only on runtune-user-* secrets."
    expression  = "resource.type == \"cloudresourcemanager.googleapis.com/Project\" || resource.name.startsWith(\"${local.user_secret_prefix}\")"
  }
}

# Readers of one user's token: the trainer (the job owner's Hugging Face and W&B tokens) and
# the ingest job (Hugging Face dataset imports). They cannot list, write or delete any secret.
resource "google_project_iam_member" "user_secret_readers" {
  for_each = local.user_secret_readers

  project = var.project_id
  role    = "roles/secretmanager.secretAccessor"
  member  = google_service_account.sa[each.key].member

  condition {
    title       = "runtune-user-secrets-only"
    description = "Only versions of runtune-user-* secrets."
    expression  = "resource.name.startsWith(\"${local.user_secret_prefix}\")"
  }
}

# The engine's Hugging Face token (Gemma is gated). Terraform creates the secret; you add its value
# once (README.md), so the token never passes through Terraform state.
resource "google_secret_manager_secret" "hf_token" {
  project   = var.project_id
  secret_id = var.hf_token_secret_id
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_iam_member" "engine_hf_token" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.hf_token.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.sa["engine"].member
}
