# One identity per job, so each can be granted exactly what it needs (iam.tf) and nothing runs
# as the default compute account.

# The runtime identity of each Cloud Run service.
resource "google_service_account" "run" {
  for_each     = local.services
  project      = var.project_id
  account_id   = "${var.prefix}-${each.key}"
  display_name = "gridsight ${each.key} service (Cloud Run runtime)"
  depends_on   = [google_project_service.api]
}

# The identity Pub/Sub signs push OIDC tokens as; services accept pushes only from it.
resource "google_service_account" "push" {
  project      = var.project_id
  account_id   = "${var.prefix}-push"
  display_name = "gridsight Pub/Sub push invoker"
  depends_on   = [google_project_service.api]
}

# The identity of the deployed model on the Vertex AI endpoint (reads the model bucket).
resource "google_service_account" "model_server" {
  project      = var.project_id
  account_id   = "${var.prefix}-model-server"
  display_name = "gridsight forecast model server (Vertex AI)"
  depends_on   = [google_project_service.api]
}

# The identity cloudbuild.yaml runs as: builds, pushes and deploys, nothing else.
resource "google_service_account" "build" {
  project      = var.project_id
  account_id   = "${var.prefix}-build"
  display_name = "gridsight Cloud Build deployer"
  depends_on   = [google_project_service.api]
}
