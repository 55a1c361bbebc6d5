# One service account per deployable, each with only what its code calls: runtune/permissions.py
# states what each one's code does, and tests/infra/test_permissions.py checks that every grant here
# is derived from it (nothing missing, nothing more). No project-level basic or
# admin role anywhere: project-level grants are the ones that have no narrower resource (Firestore,
# Firebase Auth user lookups, Secret Manager creation), and the Secret Manager ones carry conditions.

locals {
  service_accounts = {
    gateway       = "Runtune gateway (public entry; invokes the private services)"
    preprocessing = "Runtune preprocessing service (datasets)"
    training      = "Runtune training service (jobs; runs the trainer job)"
    inference     = "Runtune inference service (chat, evaluations, exports)"
    trainer       = "Runtune trainer (GPU Cloud Run job, Vertex AI custom job)"
    evaluate      = "Runtune evaluations (CPU Cloud Run job; calls the engine)"
    ingest        = "Runtune dataset ingestion (CPU Cloud Run job)"
    convert       = "Runtune GGUF conversions (CPU Cloud Run job)"
    engine        = "Runtune vLLM engine (GPU Cloud Run service)"
    # The identity Cloud Tasks calls the webhooks dispatcher as (infra/tasks.tf).
    webhooks = "Runtune webhook deliveries (Cloud Tasks -> the training service's dispatcher)"
    build    = "Runtune image builds (Cloud Build)"
  }

  # Project-level grants: Firestore (and Vertex AI's custom jobs) have no narrower IAM resource than the project.
  project_roles = {
    "preprocessing-datastore" = { account = "preprocessing", role = "roles/datastore.user" }
    "training-datastore"      = { account = "training", role = "roles/datastore.user" }
    "inference-datastore"     = { account = "inference", role = "roles/datastore.user" }
    "trainer-datastore"       = { account = "trainer", role = "roles/datastore.user" }
    "evaluate-datastore"      = { account = "evaluate", role = "roles/datastore.user" }
    "ingest-datastore"        = { account = "ingest", role = "roles/datastore.user" }
    "convert-datastore"       = { account = "convert", role = "roles/datastore.user" }
    # API keys: the gateway looks a key up by its hash and stamps its last use.
    "gateway-datastore" = { account = "gateway", role = "roles/datastore.user" }
    # firebase-admin's verify_id_token(check_revoked=True) looks the user up (disabled, revoked).
    "gateway-auth-viewer" = { account = "gateway", role = "roles/firebaseauth.viewer" }
    # Builds run as their own account and log to Cloud Logging only (cloudbuild.yaml options.logging).
    "build-logs" = { account = "build", role = "roles/logging.logWriter" }
    # Vertex AI custom jobs have no IAM resource narrower than the project either.
    "training-vertex-jobs" = { account = "training", role = google_project_iam_custom_role.runtune["vertex_job_runner"].id }
  }

  # Data bucket grants. objectUser = read, write, delete objects (no IAM, no bucket settings).
  bucket_roles = {
    "training"      = { account = "training", role = "roles/storage.objectUser" }      # deleting an ended job: its objects and exports
    "preprocessing" = { account = "preprocessing", role = "roles/storage.objectUser" } # uploads, canonical shards
    "trainer"       = { account = "trainer", role = "roles/storage.objectUser" }       # datasets in; checkpoints, adapters, exports out
    "ingest"        = { account = "ingest", role = "roles/storage.objectUser" }        # uploads in; a dataset's source copy, shards, previews out
    "inference"     = { account = "inference", role = "roles/storage.objectUser" }     # adapters, evaluation sets in; adapter archives, vibe-check images, predictions out
    "engine"        = { account = "engine", role = "roles/storage.objectViewer" }      # adapters, through the read-only volume
    "evaluate"      = { account = "evaluate", role = "roles/storage.objectUser" }      # dataset shards in; predictions out
    "convert"       = { account = "convert", role = "roles/storage.objectUser" }       # merged models in; GGUF files out
  }

  # Accounts that sign URLs (V4, through IAM signBlob with their own identity: Cloud Run's
  # metadata-server credentials hold no private key). Each may sign as itself only.
  url_signers = toset(["preprocessing", "inference"])

  # Who starts each Cloud Run job's executions (runtune/permissions.py runs_jobs), job => service.
  # Starting one runs code as the job's account, so the service may act as that one account (below)
  # and run, read and cancel that job's executions (the job_runner role, on the job: cloud_run.tf).
  # The training service also creates the Vertex AI CustomJobs, which run as the trainer too.
  job_launchers = {
    trainer  = "training"
    ingest   = "preprocessing"
    evaluate = "inference"
    convert  = "inference"
  }

  # The custom roles, where no predefined role is both sufficient and narrow: runtune/custom_roles.json
  # (the permissions the adapters call, and why), the file runtune/permissions.py grants them from.
  custom_roles = jsondecode(file("${path.module}/../runtune/custom_roles.json")).roles
}

resource "google_service_account" "sa" {
  for_each = local.service_accounts

  project      = var.project_id
  account_id   = "runtune-${each.key}"
  display_name = each.value

  depends_on = [google_project_service.apis]
}

resource "google_project_iam_member" "project" {
  for_each = local.project_roles

  project = var.project_id
  role    = each.value.role
  member  = google_service_account.sa[each.value.account].member
}

resource "google_storage_bucket_iam_member" "data" {
  for_each = local.bucket_roles

  bucket = google_storage_bucket.data.name
  role   = each.value.role
  member = google_service_account.sa[each.value.account].member
}

resource "google_service_account_iam_member" "sign_as_self" {
  for_each = local.url_signers

  service_account_id = google_service_account.sa[each.key].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = google_service_account.sa[each.key].member
}

resource "google_project_iam_custom_role" "runtune" {
  for_each = local.custom_roles

  project     = var.project_id
  role_id     = each.value.role_id
  title       = each.value.title
  description = each.value.description
  permissions = each.value.permissions

  depends_on = [google_project_service.apis]
}

resource "google_service_account_iam_member" "launcher_acts_as_job" {
  for_each = local.job_launchers

  service_account_id = google_service_account.sa[each.key].name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.sa[each.value].member
}

# The build reads its uploaded source from the build bucket.
resource "google_storage_bucket_iam_member" "build_source" {
  bucket = google_storage_bucket.build.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.sa["build"].member
}
