# The private services accept internal traffic only (ingress INGRESS_TRAFFIC_INTERNAL_ONLY). A Cloud
# Run caller counts as internal when its requests leave through a VPC network: the gateway and the
# inference service use Direct VPC egress with ALL_TRAFFIC on this subnet, whose Private Google
# Access carries *.run.app and Google APIs without any public IP, NAT or connector (no fixed cost).
resource "google_compute_network" "runtune" {
  project                 = var.project_id
  name                    = "runtune"
  auto_create_subnetworks = false
  routing_mode            = "REGIONAL"

  depends_on = [google_project_service.apis]
}

resource "google_compute_subnetwork" "runtune" {
  project                  = var.project_id
  name                     = "runtune-${var.region}"
  region                   = var.region
  network                  = google_compute_network.runtune.id
  ip_cidr_range            = var.vpc_subnet_cidr
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_10_MIN"
    flow_sampling        = 0.1
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Nothing listens in this network: Cloud Run instances only send from it. Refuse all inbound traffic.
resource "google_compute_firewall" "deny_ingress" {
  project   = var.project_id
  name      = "runtune-deny-all-ingress"
  network   = google_compute_network.runtune.id
  direction = "INGRESS"
  priority  = 65534

  deny {
    protocol = "all"
  }

  source_ranges = ["0.0.0.0/0"]

  log_config {
    metadata = "EXCLUDE_ALL_METADATA"
  }
}
