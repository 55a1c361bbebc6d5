# Terraform and provider versions. The lock file (.terraform.lock.hcl) that `terraform init` writes
# pins the exact provider builds: commit it.
terraform {
  # 1.9: variable validations check GPU names against the GPU table (local.gpu_names).
  required_version = ">= 1.9.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 7.40"
    }
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 7.40"
    }
  }

  # State lives in a bucket created once by hand (see README.md): `terraform init -backend-config=bucket=...`.
  backend "gcs" {
    prefix = "runtune"
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

# Firebase resources are beta-only; they bill quota to this project instead of the caller's.
provider "google-beta" {
  project               = var.project_id
  region                = var.region
  user_project_override = true
  billing_project       = var.project_id
}
