output "gateway_url" {
  description = "The web UI and the REST API (base URL of the openai SDK: <gateway_url>/v1)."
  value       = local.urls.gateway
}

output "ui_origin" {
  description = "The origin the gateway's CORS and the bucket's CORS admit."
  value       = local.ui_origin
}

output "firebase_web_config" {
  description = "The Firebase web configuration of the UI (public values: they identify the project, they grant nothing)."
  value       = local.firebase_web_config
}

output "data_bucket" {
  description = "The data bucket (datasets, checkpoints, adapters, exports)."
  value       = google_storage_bucket.data.name
}

output "build_bucket" {
  description = "Where `gcloud builds submit --gcs-source-staging-dir` uploads the source."
  value       = google_storage_bucket.build.name
}

output "image_registry" {
  description = "Artifact Registry path of the images (cloudbuild.yaml pushes <registry>/<name>:<sha>)."
  value       = local.registry
}

output "build_service_account" {
  description = "The account `gcloud builds submit --service-account` runs the build as."
  value       = google_service_account.sa["build"].id
}

output "service_urls" {
  description = "The private services and the engine (internal ingress: reachable only from the VPC)."
  value       = { for key in ["preprocessing", "training", "inference", "engine"] : key => local.urls[key] }
}

output "trainer_jobs" {
  description = "The trainer Cloud Run jobs, by GPU type (the training service launches the one a run's estimate chose)."
  value       = { for gpu, job in google_cloud_run_v2_job.trainer : gpu => job.name }
}
