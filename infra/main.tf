data "google_project" "this" {
  project_id = var.project_id
}

locals {
  project_number = data.google_project.this.number

  # Cloud Run names: the trainer job's name is also ServiceSettings.trainer_job_name's default.
  names = {
    gateway       = "runtune-gateway"
    preprocessing = "runtune-preprocessing"
    training      = "runtune-training"
    inference     = "runtune-inference"
    engine        = "runtune-engine"
    trainer       = "runtune-trainer"
    ingest        = "runtune-ingest" # runtune.adapters.launch_contract.cloud_run_job_name(Workload.ingest)
  }

  # Cloud Run's deterministic URLs (https://<service>-<project number>.<region>.run.app) are known
  # before the services exist, so a service can be told its own URL (the audience of the ID tokens
  # it accepts) and the gateway its upstreams without a dependency cycle. The gateway mints its ID
  # tokens for exactly these URLs, so both sides use one string.
  urls = {
    for key in ["gateway", "preprocessing", "training", "inference", "engine"] :
    key => "https://${local.names[key]}-${local.project_number}.${var.region}.run.app"
  }

  ui_origin = var.ui_origin != "" ? var.ui_origin : local.urls.gateway

  registry = "${var.region}-docker.pkg.dev/${var.project_id}/${var.artifact_repository}"
  images = {
    for key in ["gateway", "preprocessing", "training", "inference", "trainer", "engine"] :
    key => "${local.registry}/${key}:${var.image_tag}"
  }

  data_bucket  = "${var.project_id}-runtune-data"
  build_bucket = "${var.project_id}-runtune-build"

  # Where the trainer and the engine see the data bucket (Cloud Storage FUSE volume).
  data_mount_path = "/mnt/runtune-data"

  # Objects under these prefixes are temporary (abandoned uploads); the only ones a lifecycle rule deletes.
  # Top-level bucket prefixes of temporary objects (runtune/indexes.py TEMPORARY_PREFIXES): an upload's
  # object lives under uploads/{uid}/{upload_id}/ and is deleted a day after the upload expires.
  temporary_prefixes = ["uploads/"]

  # CPU and memory per GPU instance. Cloud Run's minimums: nvidia-l4 4 vCPU / 16 GiB,
  # nvidia-rtx-pro-6000 20 vCPU / 80 GiB. L4 gets 8 / 32 GiB: data loading and 4-bit quantisation
  # of the base model run on the CPU and in host memory.
  gpu_shapes = {
    "nvidia-l4"           = { cpu = "8", memory = "32Gi" }
    "nvidia-rtx-pro-6000" = { cpu = "20", memory = "80Gi" }
  }

  # Firestore TTL policies, collection => its Timestamp field (runtune/indexes.py TTL_POLICIES).
  ttl_fields = {
    idempotency_keys = "expires_at"
    uploads          = "delete_after"
  }

  # Collections listed per owner, newest first (`owner == uid ORDER BY created_at DESC`;
  # runtune/indexes.py OWNER_LISTED_COLLECTIONS).
  owner_listed_collections = ["datasets", "uploads", "jobs", "evaluations", "exports", "vibe_checks"]

  labels = {
    app        = "runtune"
    managed-by = "terraform"
  }
}
