resource "google_firestore_database" "default" {
  project                           = var.project_id
  name                              = "(default)"
  location_id                       = coalesce(var.firestore_location, var.region)
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "PESSIMISTIC"
  app_engine_integration_mode       = "DISABLED"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = var.deletion_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy                   = var.deletion_protection ? "ABANDON" : "DELETE"

  depends_on = [google_project_service.apis]
}

# The composite indexes are runtune/indexes.py COMPOSITE_INDEXES, exactly (tests/infra/test_indexes.py).
# Every list endpoint reads `owner == uid ORDER BY created_at DESC` (cursor pagination, newest first).
resource "google_firestore_index" "owner_created" {
  for_each = toset(local.owner_listed_collections)

  project    = var.project_id
  database   = google_firestore_database.default.name
  collection = each.value

  fields {
    field_path = "owner"
    order      = "ASCENDING"
  }
  fields {
    field_path = "created_at"
    order      = "DESCENDING"
  }
}

# The jobs' other composite indexes, every field ascending, in the order listed: the job dispatcher
# and reconciler's `status IN (...) ORDER BY created_at` (all users), and one user's active jobs,
# `owner == uid AND status IN (...) ORDER BY created_at`.
locals {
  jobs_indexes = {
    status_created       = ["status", "created_at"]
    owner_status_created = ["owner", "status", "created_at"]
  }
}

resource "google_firestore_index" "jobs" {
  for_each = local.jobs_indexes

  project    = var.project_id
  database   = google_firestore_database.default.name
  collection = "jobs"

  dynamic "fields" {
    for_each = each.value
    content {
      field_path = fields.value
      order      = "ASCENDING"
    }
  }
}

# Temporary documents expire on a Timestamp field (deleted within about a day after it; readers still
# check it themselves). The field is not indexed: nothing queries it.
resource "google_firestore_field" "ttl" {
  for_each = local.ttl_fields

  project    = var.project_id
  database   = google_firestore_database.default.name
  collection = each.key
  field      = each.value

  ttl_config {}
  index_config {}
}
