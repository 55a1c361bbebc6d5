# Addresses that resources had before they were folded into one resource each (for_each over a local
# map), so that `terraform apply` moves a deployed resource in the state instead of destroying and
# recreating it (a custom role's id cannot be reused for weeks; an index would be rebuilt).
# tests/infra/test_terraform.py checks every `to` exists and that no address once deployed
# (tests/infra/deployed_addresses.txt) is left without a resource or a move.

moved {
  from = google_cloud_run_v2_job.ingest
  to   = google_cloud_run_v2_job.cpu["ingest"]
}

moved {
  from = google_cloud_run_v2_job.evaluate
  to   = google_cloud_run_v2_job.cpu["evaluate"]
}

moved {
  from = google_cloud_run_v2_job.convert
  to   = google_cloud_run_v2_job.cpu["convert"]
}

moved {
  from = google_cloud_run_v2_job_iam_member.preprocessing_runs_ingest
  to   = google_cloud_run_v2_job_iam_member.cpu_job_launcher["ingest"]
}

moved {
  from = google_cloud_run_v2_job_iam_member.inference_runs_evaluate
  to   = google_cloud_run_v2_job_iam_member.cpu_job_launcher["evaluate"]
}

moved {
  from = google_cloud_run_v2_job_iam_member.inference_runs_convert
  to   = google_cloud_run_v2_job_iam_member.cpu_job_launcher["convert"]
}

moved {
  from = google_service_account_iam_member.training_acts_as_trainer
  to   = google_service_account_iam_member.launcher_acts_as_job["trainer"]
}

moved {
  from = google_service_account_iam_member.preprocessing_acts_as_ingest
  to   = google_service_account_iam_member.launcher_acts_as_job["ingest"]
}

moved {
  from = google_service_account_iam_member.inference_acts_as_evaluate
  to   = google_service_account_iam_member.launcher_acts_as_job["evaluate"]
}

moved {
  from = google_service_account_iam_member.inference_acts_as_convert
  to   = google_service_account_iam_member.launcher_acts_as_job["convert"]
}

moved {
  from = google_cloud_run_v2_service_iam_member.inference_invokes_engine
  to   = google_cloud_run_v2_service_iam_member.engine_invokers["inference"]
}

moved {
  from = google_cloud_run_v2_service_iam_member.evaluate_invokes_engine
  to   = google_cloud_run_v2_service_iam_member.engine_invokers["evaluate"]
}

moved {
  from = google_project_iam_custom_role.user_secrets
  to   = google_project_iam_custom_role.runtune["user_secrets"]
}

moved {
  from = google_project_iam_custom_role.job_runner
  to   = google_project_iam_custom_role.runtune["job_runner"]
}

moved {
  from = google_project_iam_custom_role.vertex_job_runner
  to   = google_project_iam_custom_role.runtune["vertex_job_runner"]
}

moved {
  from = google_project_iam_member.training_runs_vertex_jobs
  to   = google_project_iam_member.project["training-vertex-jobs"]
}

moved {
  from = google_firestore_index.jobs_status_created
  to   = google_firestore_index.jobs["status_created"]
}

moved {
  from = google_firestore_index.jobs_owner_status_created
  to   = google_firestore_index.jobs["owner_status_created"]
}

moved {
  from = google_cloud_run_v2_service.gateway
  to   = google_cloud_run_v2_service.cpu["gateway"]
}

moved {
  from = google_cloud_run_v2_service.private["preprocessing"]
  to   = google_cloud_run_v2_service.cpu["preprocessing"]
}

moved {
  from = google_cloud_run_v2_service.private["training"]
  to   = google_cloud_run_v2_service.cpu["training"]
}

moved {
  from = google_cloud_run_v2_service.private["inference"]
  to   = google_cloud_run_v2_service.cpu["inference"]
}
