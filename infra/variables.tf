variable "project_id" {
  description = "The GCP project that hosts Runtune (its id, not its number). Billing must be enabled."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id)) && !startswith(var.project_id, "demo-")
    error_message = "project_id must be a real project id (demo-* ids are reserved for the emulators)."
  }
}

variable "region" {
  description = "Region of every regional resource. It must offer Cloud Run GPUs of trainer_gpus and engine_gpu_type (us-central1, europe-west1, europe-west4, asia-southeast1, ...)."
  type        = string
  default     = "us-central1"
}

variable "firestore_location" {
  description = "Firestore location (a region such as us-central1, or a multi-region such as nam5). Defaults to region. Cannot change after creation."
  type        = string
  default     = null
}

variable "trainer_gpus" {
  description = "GPU types the deployment trains on, one trainer job each (runtune-trainer-l4, ...), from runtune/gpus.json: nvidia-l4 (24 GB, Gemma up to ~12B in 4-bit) and nvidia-rtx-pro-6000 (96 GB). null (the default) offers every GPU of the table; the estimate picks only among these."
  type        = list(string)
  default     = null

  validation {
    condition     = var.trainer_gpus == null || (length(coalesce(var.trainer_gpus, [])) > 0 && alltrue([for gpu in coalesce(var.trainer_gpus, []) : contains(local.gpu_names, gpu)]))
    error_message = "trainer_gpus must be null or a non-empty list of GPUs of runtune/gpus.json (nvidia-l4, nvidia-rtx-pro-6000)."
  }
}

variable "vertex_machines" {
  description = "Vertex AI machine types the deployment may also train on (runtune/gpus.json `vertex`: g2-standard-12/48/96 with 1-8 L4, a2-ultragpu-1g/8g with A100 80 GB, a3-highgpu-8g with H100, a3-ultragpu-8g with H200). A run too big or too long for a Cloud Run GPU is planned on the cheapest that fits, and `auto` takes the cheapest shape of all. Empty (the default) trains on Cloud Run alone: request the machines' GPU quota for Vertex AI custom training first (docs/architecture.md, \"Compute backends\"). null offers every machine of the table."
  type        = list(string)
  default     = []

  validation {
    condition     = var.vertex_machines == null || alltrue([for m in coalesce(var.vertex_machines, []) : contains(local.vertex_machine_names, m)])
    error_message = "vertex_machines must be null or machines of runtune/gpus.json `vertex` (g2-standard-12, g2-standard-48, g2-standard-96, a2-ultragpu-1g, a2-ultragpu-8g, a3-highgpu-8g, a3-ultragpu-8g)."
  }
}

variable "vertex_task_timeout_s" {
  description = "Timeout of a Vertex AI training job, in seconds (Vertex AI allows up to 7 days); a restarted worker restarts the job, which resumes from its newest checkpoint."
  type        = number
  default     = 259200

  validation {
    condition     = var.vertex_task_timeout_s >= 60 && var.vertex_task_timeout_s <= 604800
    error_message = "vertex_task_timeout_s must be between 60 and 604800 (7 days)."
  }
}

variable "engine_gpu_type" {
  description = "GPU of the vLLM engine service: one of runtune/gpus.json (nvidia-l4 or nvidia-rtx-pro-6000)."
  type        = string
  default     = "nvidia-l4"

  validation {
    condition     = contains(local.gpu_names, var.engine_gpu_type)
    error_message = "engine_gpu_type must be a GPU of runtune/gpus.json (nvidia-l4 or nvidia-rtx-pro-6000)."
  }
}

variable "image_tag" {
  description = "Tag of every Runtune image in Artifact Registry: the commit SHA that cloudbuild.yaml built and printed."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag)) && var.image_tag != "latest"
    error_message = "image_tag must be a docker tag (use the commit SHA; 'latest' would make deployments unreproducible)."
  }
}

variable "artifact_repository" {
  description = "Artifact Registry (docker) repository of the images; the same name as cloudbuild.yaml's _REPOSITORY."
  type        = string
  default     = "runtune"
}

variable "ui_origin" {
  description = "Origin (scheme://host[:port]) of the web UI when it is not served by the gateway (for example Firebase Hosting). Empty: the gateway's own URL."
  type        = string
  default     = ""

  validation {
    condition     = var.ui_origin == "" || can(regex("^https://[a-z0-9.-]+(:[0-9]+)?$", var.ui_origin))
    error_message = "ui_origin must be an https origin without a path, or empty."
  }
}

variable "log_level" {
  description = "Log level of the gateway and services (DEBUG, INFO, WARNING, ERROR)."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "gateway_min_instances" {
  description = "Warm gateway instances (0 scales to zero; 1 removes cold starts for about 10 USD a month)."
  type        = number
  default     = 0
}

variable "gateway_max_instances" {
  description = "Most gateway instances. Rate limits are per instance, so this also bounds the total request rate per user."
  type        = number
  default     = 10
}

variable "service_max_instances" {
  description = "Most instances of each private service."
  type        = number
  default     = 10
}

variable "training_min_instances" {
  description = "Instances of the training service kept running. Its reconciler (stale jobs, queued jobs) runs in the background of an instance, so keep at least 1."
  type        = number
  default     = 1

  validation {
    condition     = var.training_min_instances >= 1
    error_message = "training_min_instances must be at least 1: the job reconciler runs inside the training service."
  }
}

variable "trainer_task_timeout_s" {
  description = "Timeout of one trainer task attempt, in seconds. Cloud Run GPU tasks run at most 1 hour (12 hours in preview); the trainer resumes from its newest checkpoint on the next attempt."
  type        = number
  default     = 3600

  validation {
    condition     = var.trainer_task_timeout_s >= 60 && var.trainer_task_timeout_s <= 43200
    error_message = "trainer_task_timeout_s must be between 60 and 43200 (12 hours, the GPU job maximum in preview)."
  }
}

variable "ingest_task_timeout_s" {
  description = "Timeout of one dataset ingestion, in seconds; the dataset fails with this reason after it."
  type        = number
  default     = 3600

  validation {
    condition     = var.ingest_task_timeout_s >= 60 && var.ingest_task_timeout_s <= 86400
    error_message = "ingest_task_timeout_s must be between 60 and 86400 (24 hours, the CPU job maximum)."
  }
}

variable "ingest_cpu" {
  description = "vCPUs of one dataset ingestion execution (images are normalised in parallel)."
  type        = string
  default     = "4"
}

variable "ingest_memory" {
  description = "Memory of one dataset ingestion execution; a file needing more fails its dataset with 'out of memory'."
  type        = string
  default     = "16Gi"
}

variable "trainer_max_retries" {
  description = "Retries of a failed trainer task. Safe because the trainer resumes from its newest checkpoint."
  type        = number
  default     = 3
}

variable "engine_max_instances" {
  description = "Most engine instances (each holds one GPU; it scales to zero when idle)."
  type        = number
  default     = 1
}

variable "hf_token_secret_id" {
  description = "Secret Manager secret (created by this configuration, its value added by you) holding a Hugging Face token that may download the engine's base model (runtune/serving.json; Gemma is gated)."
  type        = string
  default     = "runtune-hf-token"
}

variable "vpc_subnet_cidr" {
  description = "Range of the subnet that the gateway and the inference service egress through (Direct VPC egress uses two addresses per instance)."
  type        = string
  default     = "10.8.0.0/24"
}

variable "authorized_domains" {
  description = "Extra domains allowed to sign users in (Firebase Auth), besides the gateway's and the UI origin's."
  type        = list(string)
  default     = []
}

variable "deletion_protection" {
  description = "Protect the Cloud Run services, the jobs and the Firestore database from `terraform destroy`."
  type        = bool
  default     = true
}

variable "evaluate_cpu" {
  description = "vCPUs of an evaluation execution (the runtune-evaluate job). It mostly waits on the engine; 1 is enough, 2 decodes images faster."
  type        = string
  default     = "1"
}

variable "evaluate_memory" {
  description = "Memory of an evaluation execution: the split's examples (images included) are held while they are scored."
  type        = string
  default     = "2Gi"
}

variable "evaluate_task_timeout_s" {
  description = "Timeout of one evaluation execution, in seconds (Cloud Run CPU jobs: at most 24 hours). An evaluation still running then ends failed with the reason."
  type        = number
  default     = 3600

  validation {
    condition     = var.evaluate_task_timeout_s >= 60 && var.evaluate_task_timeout_s <= 86400
    error_message = "evaluate_task_timeout_s must be between 60 and 86400 (24 hours, the Cloud Run job maximum)."
  }
}

variable "convert_cpu" {
  description = "vCPUs of a GGUF conversion (the runtune-convert job): llama.cpp's quantizer uses them all."
  type        = string
  default     = "8"
}

variable "convert_memory" {
  description = "Memory of a GGUF conversion: the converter's largest tensors, and each output file while it is written to the bucket volume (RUNTUNE_GGUF_SPLIT_MAX_SIZE caps a GGUF file; an Ollama file is whole, so its model's quantized size must fit)."
  type        = string
  default     = "32Gi"
}

variable "convert_task_timeout_s" {
  description = "Timeout of one conversion, in seconds (Cloud Run CPU jobs: at most 24 hours)."
  type        = number
  default     = 10800

  validation {
    condition     = var.convert_task_timeout_s >= 60 && var.convert_task_timeout_s <= 86400
    error_message = "convert_task_timeout_s must be between 60 and 86400 (24 hours, the Cloud Run job maximum)."
  }
}

# Who may use the platform (RUNTUNE_SIGNUP_* of the gateway; gateway/signup.py). Anyone holding the
# public web API key can create a Firebase account, so the default admits only invited addresses.
variable "signup_policy" {
  description = "Who may use the platform once signed in: \"invite\" (the verified addresses of signup_invited_emails), \"domains\" (verified addresses at signup_allowed_domains) or \"open\" (any account)."
  type        = string
  default     = "invite"

  validation {
    condition     = contains(["invite", "domains", "open"], var.signup_policy)
    error_message = "signup_policy must be \"invite\", \"domains\" or \"open\"."
  }
}

variable "signup_invited_emails" {
  description = "With signup_policy \"invite\": the email addresses that may use the platform (once verified)."
  type        = list(string)
  default     = []

  validation {
    condition     = var.signup_policy != "invite" || length(var.signup_invited_emails) > 0
    error_message = "signup_policy \"invite\" admits nobody without signup_invited_emails: list at least one address."
  }
}

variable "signup_allowed_domains" {
  description = "With signup_policy \"domains\": the email domains (e.g. \"example.com\") whose verified addresses may use the platform."
  type        = list(string)
  default     = []

  validation {
    condition     = var.signup_policy != "domains" || length(var.signup_allowed_domains) > 0
    error_message = "signup_policy \"domains\" admits nobody without signup_allowed_domains: list at least one domain."
  }
}

variable "webhook_retry_window_s" {
  description = "How long a webhook event is retried before its endpoint is disabled (at least 24 hours)."
  type        = number
  default     = 86400
  validation {
    condition     = var.webhook_retry_window_s >= 86400
    error_message = "webhook_retry_window_s must be at least 86400 (24 hours)."
  }
}

variable "webhook_min_backoff_s" {
  description = "The webhook queue's first retry delay, doubled at each retry up to webhook_max_backoff_s."
  type        = number
  default     = 10
}

variable "webhook_max_backoff_s" {
  description = "The webhook queue's longest delay between two attempts."
  type        = number
  default     = 3600
}

variable "webhook_max_dispatches_per_second" {
  description = "Webhook delivery attempts per second, all endpoints together."
  type        = number
  default     = 50
}

variable "webhook_max_concurrent_dispatches" {
  description = "Webhook delivery attempts in flight at once."
  type        = number
  default     = 100
}
