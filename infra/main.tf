data "google_project" "this" {
  project_id = var.project_id
}

locals {
  project_number = data.google_project.this.number

  # Cloud Run names.
  names = {
    gateway       = "runtune-gateway"
    preprocessing = "runtune-preprocessing"
    training      = "runtune-training"
    inference     = "runtune-inference"
    engine        = "runtune-engine"
  }

  # Every Cloud Run job is named `<job_prefix>-<workload>[-<gpu>]` (runtune-trainer-l4, ...): the
  # services find them by the same rule (runtune/adapters/launch_contract.py cloud_run_job_name).
  job_prefix = "runtune"

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
    for key in ["gateway", "preprocessing", "training", "inference", "trainer", "engine", "convert"] :
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

  # The GPU table the estimate uses (runtune/estimate.py GPU_TABLE): one file, so every GPU an
  # estimate can pick has a trainer job, shaped (CPU, memory) as the estimate priced it.
  gpu_table = jsondecode(file("${path.module}/../runtune/gpus.json"))
  gpu_names = [for gpu in local.gpu_table.gpus : gpu.name]
  # CPU and memory per GPU instance (at least Cloud Run's minimum for the GPU; the table says why).
  gpu_shapes = {
    for gpu in local.gpu_table.gpus : gpu.name => {
      cpu    = tostring(gpu.cloud_run_cpu)
      memory = "${gpu.cloud_run_memory_gib}Gi"
    }
  }
  # The GPUs this deployment has a trainer job for; null offers every GPU of the table.
  trainer_gpus = var.trainer_gpus == null ? local.gpu_names : distinct(var.trainer_gpus)
  # The Vertex AI machines it may train on besides (runtune/compute.py); null offers every one.
  vertex_machine_names = [for machine in local.gpu_table.vertex.machines : machine.name]
  vertex_machines      = var.vertex_machines == null ? local.vertex_machine_names : distinct(var.vertex_machines)

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
