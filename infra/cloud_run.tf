# The environment contract with runtune/settings.py (tests/infra compares each deployable's with the
# fields of its settings class): what every deployable reads (CommonSettings), and each one's own
# besides. Settings with good defaults stay unset; image-level ones (host, port, frontend folder) are
# set by the Dockerfiles. Emulator variables never appear here: the gcp profile refuses to start with
# any of them.
locals {
  common_env = {
    RUNTUNE_PROFILE    = "gcp"
    RUNTUNE_PROJECT_ID = var.project_id
    RUNTUNE_REGION     = var.region
    RUNTUNE_BUCKET     = local.data_bucket
    RUNTUNE_LOG_LEVEL  = var.log_level
  }
  env = { for deployable, own in local.own_env : deployable => merge(local.common_env, own) }

  own_env = {
    gateway = {
      RUNTUNE_PREPROCESSING_URL = local.urls.preprocessing
      RUNTUNE_TRAINING_URL      = local.urls.training
      RUNTUNE_INFERENCE_URL     = local.urls.inference
      RUNTUNE_CORS_ORIGINS      = jsonencode([local.ui_origin])
      # Served to the web UI at /config.json: public identifiers of the project, no secret.
      RUNTUNE_FIREBASE_WEB_CONFIG = jsonencode(local.firebase_web_config)
      # Who may use the platform (gateway/signup.py).
      RUNTUNE_SIGNUP_POLICY          = var.signup_policy
      RUNTUNE_SIGNUP_INVITED_EMAILS  = jsonencode(var.signup_invited_emails)
      RUNTUNE_SIGNUP_ALLOWED_DOMAINS = jsonencode(var.signup_allowed_domains)
    }
    preprocessing = {
      RUNTUNE_GATEWAY_SERVICE_ACCOUNT = google_service_account.sa["gateway"].email
      RUNTUNE_SERVICE_AUDIENCE        = local.urls.preprocessing
      # The task timeout the service passes when it starts an ingestion (the job's own, below).
      RUNTUNE_INGEST_TASK_TIMEOUT_S = tostring(var.ingest_task_timeout_s)
      RUNTUNE_CLOUD_RUN_JOB_PREFIX  = local.job_prefix
    }
    training = {
      RUNTUNE_GATEWAY_SERVICE_ACCOUNT = google_service_account.sa["gateway"].email
      RUNTUNE_SERVICE_AUDIENCE        = local.urls.training
      # The trainer jobs it launches (<prefix>-trainer-<gpu>) and the GPUs they exist for.
      RUNTUNE_CLOUD_RUN_JOB_PREFIX   = local.job_prefix
      RUNTUNE_OFFERED_GPUS           = jsonencode(local.trainer_gpus)
      RUNTUNE_TRAINER_TASK_TIMEOUT_S = tostring(var.trainer_task_timeout_s)
      # Vertex AI custom training (runtune/adapters/vertex_launcher.py): the machines offered, and what a
      # CustomJob runs: the trainer's image and account (those of the trainer jobs).
      RUNTUNE_VERTEX_MACHINES        = jsonencode(local.vertex_machines)
      RUNTUNE_VERTEX_TRAINER_IMAGE   = local.images.trainer
      RUNTUNE_VERTEX_SERVICE_ACCOUNT = google_service_account.sa["trainer"].email
      RUNTUNE_VERTEX_TASK_TIMEOUT_S  = tostring(var.vertex_task_timeout_s)
      # Webhooks: the queue the outbox sweep fills, the account its tasks call the dispatcher as.
      RUNTUNE_WEBHOOK_QUEUE                    = "${local.job_prefix}-webhooks"
      RUNTUNE_WEBHOOK_DISPATCH_SERVICE_ACCOUNT = google_service_account.sa["webhooks"].email
      RUNTUNE_WEBHOOK_RETRY_WINDOW_S           = tostring(var.webhook_retry_window_s)
      RUNTUNE_WEBHOOK_MIN_BACKOFF_S            = tostring(var.webhook_min_backoff_s)
      RUNTUNE_WEBHOOK_MAX_BACKOFF_S            = tostring(var.webhook_max_backoff_s)
    }
    inference = {
      RUNTUNE_GATEWAY_SERVICE_ACCOUNT = google_service_account.sa["gateway"].email
      RUNTUNE_SERVICE_AUDIENCE        = local.urls.inference
      RUNTUNE_ENGINE_URL              = local.urls.engine
      # The engine reads adapters by path through its read-only bucket volume: nothing to download.
      RUNTUNE_ENGINE_ADAPTER_ROOT     = local.data_mount_path
      RUNTUNE_ENGINE_ADAPTER_DOWNLOAD = "false"
      # The service evicts adapters at the engine's own limit (vLLM --max-loras).
      RUNTUNE_ENGINE_MAX_ADAPTERS = tostring(local.serving.max_loras)
      # The task timeout of the evaluation executions it launches (the job's own timeout).
      RUNTUNE_EVALUATION_TIMEOUT_S = tostring(var.evaluate_task_timeout_s)
      RUNTUNE_CONVERT_TIMEOUT_S    = tostring(var.convert_task_timeout_s)
      RUNTUNE_CLOUD_RUN_JOB_PREFIX = local.job_prefix
    }
    # An evaluation execution (jobs/evaluate): the engine as the inference service reaches it.
    evaluate = {
      RUNTUNE_ENGINE_URL              = local.urls.engine
      RUNTUNE_ENGINE_ADAPTER_ROOT     = local.data_mount_path
      RUNTUNE_ENGINE_ADAPTER_DOWNLOAD = "false"
      RUNTUNE_ENGINE_MAX_ADAPTERS     = tostring(local.serving.max_loras)
    }
    # A GGUF conversion (jobs/convert) reads and writes through the bucket's volume; an ingestion
    # (jobs/ingest) needs nothing more either.
    convert = {}
    ingest  = {}
    # The same variables reach every Vertex AI CustomJob from the training service's own settings
    # (runtune/wiring.py vertex_trainer_env; tests/infra/test_env_contract.py checks they agree).
    trainer = {}
  }

  # The CPU services, alike but for their size, scaling, whether CPU stays allocated between
  # requests, whether they egress through the VPC, and who may reach them. The gateway is the only
  # public one (all ingress, `allUsers` may invoke it): it verifies Firebase ID tokens, proxies to the
  # private services and serves the UI, and takes more concurrent requests (mostly waiting on its
  # upstreams). The private ones accept internal traffic only, and only the gateway's account may
  # invoke them (below). The training service keeps CPU (and min instances >= 1) because its job
  # reconciler runs in the background. The preprocessing service does no work after its answers
  # (ingestion is the runtune-ingest job), so it may idle; reads reconcile the datasets they show. A
  # request to an internal-only service must leave its caller through the VPC to arrive as internal:
  # the gateway's and the inference service's (the engine) do, all their egress.
  public_services = {
    gateway = { cpu = "1", memory = "1Gi", cpu_idle = true, min_instances = var.gateway_min_instances, max_instances = var.gateway_max_instances, concurrency = 250, vpc_egress = true }
  }
  private_services = {
    preprocessing = { cpu = "2", memory = "4Gi", cpu_idle = true, min_instances = 0, max_instances = var.service_max_instances, concurrency = 80, vpc_egress = false }
    training      = { cpu = "1", memory = "1Gi", cpu_idle = false, min_instances = var.training_min_instances, max_instances = var.service_max_instances, concurrency = 80, vpc_egress = false }
    inference     = { cpu = "1", memory = "1Gi", cpu_idle = true, min_instances = 0, max_instances = var.service_max_instances, concurrency = 80, vpc_egress = true }
  }
  service_descriptions = {
    gateway       = "Runtune gateway: verifies Firebase ID tokens, proxies to the private services, serves the UI"
    preprocessing = "Runtune preprocessing service (private: the gateway's account only)"
    training      = "Runtune training service (private: the gateway's account only)"
    inference     = "Runtune inference service (private: the gateway's account only)"
  }
}

# --- the CPU services: the gateway and the private services -----------------------------------------

resource "google_cloud_run_v2_service" "cpu" {
  for_each = merge(local.public_services, local.private_services)

  project             = var.project_id
  name                = local.names[each.key]
  location            = var.region
  description         = local.service_descriptions[each.key]
  ingress             = contains(keys(local.public_services), each.key) ? "INGRESS_TRAFFIC_ALL" : "INGRESS_TRAFFIC_INTERNAL_ONLY"
  deletion_protection = var.deletion_protection
  labels              = local.labels

  template {
    service_account                  = google_service_account.sa[each.key].email
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"
    timeout                          = "3600s" # Server-Sent Events and large uploads stream through
    max_instance_request_concurrency = each.value.concurrency

    scaling {
      min_instance_count = each.value.min_instances
      max_instance_count = each.value.max_instances
    }

    dynamic "vpc_access" {
      for_each = each.value.vpc_egress ? [1] : []
      content {
        egress = "ALL_TRAFFIC"
        network_interfaces {
          network    = google_compute_network.runtune.id
          subnetwork = google_compute_subnetwork.runtune.id
        }
      }
    }

    containers {
      image = local.images[each.key]

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = each.value.cpu
          memory = each.value.memory
        }
        cpu_idle          = each.value.cpu_idle
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = local.env[each.key]
        content {
          name  = env.key
          value = env.value
        }
      }

      startup_probe {
        http_get {
          path = "/healthz"
        }
        period_seconds    = 2
        timeout_seconds   = 2
        failure_threshold = 30
      }
    }
  }

  depends_on = [google_project_service.apis]
}

# The gateway is public: anyone may call it (it verifies Firebase ID tokens and API keys itself).
resource "google_cloud_run_v2_service_iam_member" "gateway_public" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.cpu["gateway"].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# Cloud Run IAM: only the gateway's account may invoke a private service.
resource "google_cloud_run_v2_service_iam_member" "gateway_invokes" {
  for_each = local.private_services

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.cpu[each.key].name
  role     = "roles/run.invoker"
  member   = google_service_account.sa["gateway"].member
}

# --- the trainer: a GPU Cloud Run job per GPU type offered, one execution per fine-tuning job ------

# The training service launches the job of the GPU the estimate chose for the run
# (runtune-trainer-l4, runtune-trainer-rtx-pro-6000), so a run never lands on a GPU it does not fit.
resource "google_cloud_run_v2_job" "trainer" {
  for_each = toset(local.trainer_gpus)

  project             = var.project_id
  name                = "${local.job_prefix}-trainer-${trimprefix(each.key, "nvidia-")}"
  location            = var.region
  deletion_protection = var.deletion_protection
  labels              = local.labels

  template {
    # One task per execution; the training service overrides args (the job id), non-secret env and
    # the timeout per execution.
    task_count  = 1
    parallelism = 1

    template {
      service_account       = google_service_account.sa["trainer"].email
      execution_environment = "EXECUTION_ENVIRONMENT_GEN2"
      timeout               = "${var.trainer_task_timeout_s}s"
      # A retried attempt resumes from the newest checkpoint, so retries never redo finished steps.
      max_retries = var.trainer_max_retries

      node_selector {
        accelerator = each.key
      }
      # Best-effort zonal capacity: cheaper GPU seconds and its own (easier) quota; a lost zone
      # costs a retry, which resumes from a checkpoint.
      gpu_zonal_redundancy_disabled = true

      volumes {
        name = "data"
        gcs {
          bucket    = google_storage_bucket.data.name
          read_only = false
        }
      }

      containers {
        image = local.images.trainer

        resources {
          limits = {
            cpu              = local.gpu_shapes[each.key].cpu
            memory           = local.gpu_shapes[each.key].memory
            "nvidia.com/gpu" = "1"
          }
        }

        dynamic "env" {
          for_each = local.env.trainer
          content {
            name  = env.key
            value = env.value
          }
        }

        volume_mounts {
          name       = "data"
          mount_path = local.data_mount_path
        }
      }
    }
  }

  depends_on = [google_project_service.apis, google_storage_bucket_iam_member.data]
}

# The training service starts executions with overrides, reads and cancels them: on the trainer jobs only.
resource "google_cloud_run_v2_job_iam_member" "training_runs_trainer" {
  for_each = google_cloud_run_v2_job.trainer

  project  = var.project_id
  location = var.region
  name     = each.value.name
  role     = google_project_iam_custom_role.runtune["job_runner"].id
  member   = google_service_account.sa[local.job_launchers.trainer].member
}

# --- the vLLM engine: a GPU Cloud Run service the inference service calls -------------------------

# The serving contract: the engine's base model and LoRA limits, read from the same file the
# training service checks every new job against (runtune/serving.py), so a job never produces an
# adapter this engine cannot serve. It lives in the package because every image ships runtune/.
locals {
  serving = jsondecode(file("${path.module}/../runtune/serving.json"))
}

resource "google_cloud_run_v2_service" "engine" {
  project             = var.project_id
  name                = local.names.engine
  location            = var.region
  description         = "vLLM OpenAI-compatible server with LoRA adapters loaded at run time"
  ingress             = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  deletion_protection = var.deletion_protection
  labels              = local.labels

  template {
    service_account                  = google_service_account.sa["engine"].email
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"
    timeout                          = "3600s"
    max_instance_request_concurrency = 64 # vLLM batches concurrent requests on the GPU

    scaling {
      min_instance_count = 0
      max_instance_count = var.engine_max_instances
    }

    node_selector {
      accelerator = var.engine_gpu_type
    }
    gpu_zonal_redundancy_disabled = true

    # Adapters are loaded from the data bucket by path (POST /v1/load_lora_adapter).
    volumes {
      name = "data"
      gcs {
        bucket    = google_storage_bucket.data.name
        read_only = true
      }
    }

    containers {
      image = local.images.engine
      args = [
        # One vLLM server serves one base (runtune/serving.py refuses a contract with more).
        one(local.serving.base_models),
        "--host", "0.0.0.0",
        "--port", "8080",
        "--enable-lora",
        "--max-lora-rank", tostring(local.serving.max_lora_rank),
        "--max-loras", tostring(local.serving.max_loras),
        # Off, vLLM drops an adapter's vision-tower layers and serves the rest; the jobs API refuses
        # such adapters instead.
        local.serving.tower_connector_lora ? "--enable-tower-connector-lora" : "--no-enable-tower-connector-lora",
        "--max-model-len", tostring(local.serving.max_model_len),
        "--gpu-memory-utilization", tostring(local.serving.gpu_memory_utilization),
        # No remote media: vLLM fetches http(s) image/audio/video URLs from any host when this list
        # is empty, so it names only `invalid`, a name that never resolves (RFC 6761). The services
        # send images inline as data URLs; `--allowed-local-media-path` stays unset, so no `file:`
        # URL is read either (the data bucket is mounted here).
        "--allowed-media-domains", "invalid",
      ]

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu              = local.gpu_shapes[var.engine_gpu_type].cpu
          memory           = local.gpu_shapes[var.engine_gpu_type].memory
          "nvidia.com/gpu" = "1"
        }
        # GPU instances need CPU allocated for their whole life.
        cpu_idle          = false
        startup_cpu_boost = true
      }

      env {
        name  = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"
        value = "True"
      }

      env {
        name  = "VLLM_MEDIA_URL_ALLOW_REDIRECTS"
        value = "0"
      }

      env {
        name = "HF_TOKEN"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.hf_token.secret_id
            version = "latest"
          }
        }
      }

      volume_mounts {
        name       = "data"
        mount_path = local.data_mount_path
      }

      # Downloading and loading the base model takes minutes: allow up to 20 before giving up.
      startup_probe {
        http_get {
          path = "/health"
          port = 8080
        }
        initial_delay_seconds = 30
        period_seconds        = 10
        timeout_seconds       = 5
        failure_threshold     = 120
      }

      liveness_probe {
        http_get {
          path = "/health"
          port = 8080
        }
        period_seconds    = 30
        timeout_seconds   = 5
        failure_threshold = 3
      }
    }
  }

  depends_on = [
    google_project_service.apis,
    google_secret_manager_secret_iam_member.engine_hf_token,
    google_storage_bucket_iam_member.data,
  ]
}

# The inference service calls the engine, and so do the evaluations it launches, each with an ID token
# of its own account.
resource "google_cloud_run_v2_service_iam_member" "engine_invokers" {
  for_each = toset(["inference", "evaluate"])

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.engine.name
  role     = "roles/run.invoker"
  member   = google_service_account.sa[each.key].member
}

# --- the CPU Cloud Run jobs: one execution per dataset, evaluation or conversion ------------------

locals {
  # Each is named <job_prefix>-<workload> (runtune.adapters.launch_contract.cloud_run_job_name),
  # runs `python -m jobs.<workload>` as the account of that name, and is launched by the service of
  # local.job_launchers (iam.tf), which passes the item's id as args and overrides the timeout.
  # None retries: a retry would redo a deterministic failure (a file out of memory or time) and hide
  # why the first attempt died; the launching service fails the item with that reason instead.
  #
  # ingest: dataset ingestion (jobs/ingest), one execution per dataset, in the preprocessing image,
  # which has the same dataset libraries (services/Dockerfile).
  # evaluate: evaluations (jobs/evaluate). The inference service answers POST /v1/evaluations with
  # 202 and launches one; it scores the split through the engine and writes the progress, so nothing
  # runs in a throttled (cpu_idle) service instance after its response. In the inference service's
  # image: the same library code, another entry point. The engine accepts internal traffic only, so
  # the job egresses through the VPC, as the inference service does.
  # convert: GGUF conversions (jobs/convert), one per GGUF or Ollama export (POST /v1/exports answers
  # with the export `queued`), in an image of its own (llama.cpp compiled in). The bucket is mounted:
  # the merged model is read through the volume and each GGUF file written to it is held in memory
  # only until it is closed (the job's disk is its memory too).
  cpu_jobs = {
    ingest   = { image = "preprocessing", cpu = var.ingest_cpu, memory = var.ingest_memory, timeout_s = var.ingest_task_timeout_s, vpc_egress = false, data_volume = false }
    evaluate = { image = "inference", cpu = var.evaluate_cpu, memory = var.evaluate_memory, timeout_s = var.evaluate_task_timeout_s, vpc_egress = true, data_volume = false }
    convert  = { image = "convert", cpu = var.convert_cpu, memory = var.convert_memory, timeout_s = var.convert_task_timeout_s, vpc_egress = false, data_volume = true }
  }
}

resource "google_cloud_run_v2_job" "cpu" {
  for_each = local.cpu_jobs

  project             = var.project_id
  name                = "${local.job_prefix}-${each.key}"
  location            = var.region
  deletion_protection = var.deletion_protection
  labels              = local.labels

  template {
    task_count  = 1
    parallelism = 1

    template {
      service_account       = google_service_account.sa[each.key].email
      execution_environment = "EXECUTION_ENVIRONMENT_GEN2"
      timeout               = "${each.value.timeout_s}s"
      max_retries           = 0

      dynamic "vpc_access" {
        for_each = each.value.vpc_egress ? [1] : []
        content {
          egress = "ALL_TRAFFIC"
          network_interfaces {
            network    = google_compute_network.runtune.id
            subnetwork = google_compute_subnetwork.runtune.id
          }
        }
      }

      dynamic "volumes" {
        for_each = each.value.data_volume ? [1] : []
        content {
          name = "data"
          gcs {
            bucket    = google_storage_bucket.data.name
            read_only = false
          }
        }
      }

      containers {
        image   = local.images[each.value.image]
        command = ["python", "-m", "jobs.${each.key}"]

        resources {
          limits = {
            cpu    = each.value.cpu
            memory = each.value.memory
          }
        }

        dynamic "env" {
          for_each = local.env[each.key]
          content {
            name  = env.key
            value = env.value
          }
        }

        dynamic "volume_mounts" {
          for_each = each.value.data_volume ? [1] : []
          content {
            name       = "data"
            mount_path = local.data_mount_path
          }
        }
      }
    }
  }

  depends_on = [google_project_service.apis, google_storage_bucket_iam_member.data]
}

# Its launcher starts executions with overrides, reads and cancels them: on that job only.
resource "google_cloud_run_v2_job_iam_member" "cpu_job_launcher" {
  for_each = local.cpu_jobs

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_job.cpu[each.key].name
  role     = google_project_iam_custom_role.runtune["job_runner"].id
  member   = google_service_account.sa[local.job_launchers[each.key]].member
}
