# --- webhooks: the delivery queue ------------------------------------------------------------------
# The training service's outbox sweep adds one task per (event, endpoint); Cloud Tasks POSTs it to the
# service's dispatcher (/internal/webhooks/deliver) with an OIDC token for the webhooks
# account, and retries while the dispatcher answers 503 (the endpoint failed), with exponential
# backoff, for a little longer than the dispatcher's own window (RUNTUNE_WEBHOOK_RETRY_WINDOW_S),
# after which the dispatcher disables the endpoint and answers 200. docs/architecture.md "Webhooks".

resource "google_cloud_tasks_queue" "webhooks" {
  project  = var.project_id
  name     = "${local.job_prefix}-webhooks"
  location = var.region

  rate_limits {
    # The dispatcher's rate into the training service, all endpoints together; each attempt is one
    # bounded POST (RUNTUNE_WEBHOOK_TIMEOUT_S).
    max_dispatches_per_second = var.webhook_max_dispatches_per_second
    max_concurrent_dispatches = var.webhook_max_concurrent_dispatches
  }

  retry_config {
    max_attempts       = -1 # bounded by time, not count
    max_retry_duration = "${var.webhook_retry_window_s + 3600}s"
    min_backoff        = "${var.webhook_min_backoff_s}s"
    max_backoff        = "${var.webhook_max_backoff_s}s"
    max_doublings      = 16
  }

  stackdriver_logging_config {
    sampling_ratio = 0.1
  }

  depends_on = [google_project_service.apis]
}

# The sweep (training service) may add tasks to this queue only, and mint their OIDC tokens as the
# dispatch account only (Cloud Tasks checks actAs on the token's account at enqueue time).
resource "google_cloud_tasks_queue_iam_member" "training_enqueues_webhooks" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_tasks_queue.webhooks.name
  role     = "roles/cloudtasks.enqueuer"
  member   = google_service_account.sa["training"].member
}

resource "google_service_account_iam_member" "training_acts_as_webhooks" {
  service_account_id = google_service_account.sa["webhooks"].name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.sa["training"].member
}

# The dispatch account's one permission: invoking the training service (whose middleware accepts its
# token on the dispatcher's path only, and the gateway's nowhere else but the API).
resource "google_cloud_run_v2_service_iam_member" "webhooks_invoke_training" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.cpu["training"].name
  role     = "roles/run.invoker"
  member   = google_service_account.sa["webhooks"].member
}
