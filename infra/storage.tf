# The data bucket: users' uploads, canonical datasets, checkpoints, adapters, exports
# (users/{uid}/...). Private: uniform bucket-level access, public access prevention enforced, no
# ACLs. Browsers reach objects only through short-lived signed URLs or resumable-upload sessions
# that a service opened, so CORS admits the UI origin alone.
resource "google_storage_bucket" "data" {
  project                     = var.project_id
  name                        = local.data_bucket
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = local.labels

  # Datasets and trained adapters must survive a mistaken overwrite or delete.
  versioning {
    enabled = true
  }

  soft_delete_policy {
    retention_duration_seconds = 604800 # 7 days
  }

  # Lifecycle only on temporary objects: uploads under the temporary prefixes (an upload expires after
  # 7 days; its object goes a day later; a dataset made from it keeps its own copy of the source) ...
  dynamic "lifecycle_rule" {
    for_each = local.temporary_prefixes
    content {
      action {
        type = "Delete"
      }
      condition {
        age            = 8
        matches_prefix = [lifecycle_rule.value]
      }
    }
  }

  dynamic "lifecycle_rule" {
    for_each = local.temporary_prefixes
    content {
      action {
        type = "AbortIncompleteMultipartUpload"
      }
      condition {
        age            = 1
        matches_prefix = [lifecycle_rule.value]
      }
    }
  }

  # ... and the superseded copies that versioning keeps: a live object is never deleted by a rule.
  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      with_state                 = "ARCHIVED"
      days_since_noncurrent_time = 30
    }
  }

  logging {
    log_bucket        = google_storage_bucket.logs.name
    log_object_prefix = "data/"
  }

  cors {
    origin          = [local.ui_origin]
    method          = ["GET", "HEAD", "PUT", "POST"]
    response_header = ["Content-Type", "Content-Length", "Content-Range", "Range", "ETag", "x-goog-resumable"]
    max_age_seconds = 3600
  }

  depends_on = [google_project_service.apis]
}

# The build bucket: `gcloud builds submit --gcs-source-staging-dir=gs://<this>/source` uploads the
# source tarball here. Everything under source/ is temporary.
resource "google_storage_bucket" "build" {
  project                     = var.project_id
  name                        = local.build_bucket
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true
  labels                      = local.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      age            = 7
      matches_prefix = ["source/"]
    }
  }

  logging {
    log_bucket        = google_storage_bucket.logs.name
    log_object_prefix = "build/"
  }

  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      with_state                 = "ARCHIVED"
      days_since_noncurrent_time = 1
    }
  }

  depends_on = [google_project_service.apis]
}

# Usage logs of the two buckets above (who read or wrote which object, hourly CSV files), kept 90 days.
resource "google_storage_bucket" "logs" {
  #checkov:skip=CKV_GCP_62:This is the access-log bucket itself; logging it into itself would loop and another log bucket would need one too.
  project                     = var.project_id
  name                        = "${var.project_id}-runtune-logs"
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = local.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      age = 90
    }
  }

  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      with_state                 = "ARCHIVED"
      days_since_noncurrent_time = 1
    }
  }

  depends_on = [google_project_service.apis]
}

# Cloud Storage writes usage logs as this Google-owned group (documented requirement of usage logs).
resource "google_storage_bucket_iam_member" "logs_writer" {
  bucket = google_storage_bucket.logs.name
  role   = "roles/storage.objectCreator"
  member = "group:cloud-storage-analytics@google.com"
}
