# The Cloud Build trigger: a push to the branch runs cloudbuild.yaml (tests, parallel image builds,
# deploys). The substitutions hand it every name Terraform chose, so the build file hard-codes none.

# The repository linked into the 2nd-gen connection (same region as the trigger: a regional
# trigger cannot use a connection or a 1st-gen `github {}` link made in `global`).
resource "google_cloudbuildv2_repository" "source" {
  count             = var.github_repository == null ? 0 : 1
  project           = var.project_id
  location          = var.region
  name              = var.github_repository.name
  parent_connection = "projects/${var.project_id}/locations/${var.region}/connections/${var.github_repository.connection}"
  remote_uri        = "https://github.com/${var.github_repository.owner}/${var.github_repository.name}.git"
  depends_on        = [google_project_service.api]
}

resource "google_cloudbuild_trigger" "deploy" {
  count           = var.github_repository == null ? 0 : 1
  project         = var.project_id
  location        = var.region
  name            = "${var.prefix}-deploy"
  description     = "Test, build and deploy gridsight on every push to ${var.github_repository.branch}."
  filename        = "cloudbuild.yaml"
  service_account = google_service_account.build.id

  repository_event_config {
    repository = google_cloudbuildv2_repository.source[0].id
    push {
      branch = var.github_repository.branch
    }
  }

  substitutions = {
    _ENDPOINT_ID           = google_vertex_ai_endpoint.forecast.name
    _FIVETRAN_CONNECTION   = var.raw_dataset
    _FIVETRAN_DESTINATION  = var.fivetran.group_name
    _MODEL_BUCKET          = google_storage_bucket.models.name
    _MODEL_SERVER_SA       = google_service_account.model_server.email
    _PREFIX                = var.prefix
    _REGION                = var.region
    _REPOSITORY            = google_artifact_registry_repository.images.repository_id
    _SECRET_FIVETRAN_KEY   = google_secret_manager_secret.secret["fivetran-api-key"].secret_id
    _SECRET_VENDOR_API_KEY = google_secret_manager_secret.secret["vendor-api-key"].secret_id
    _VENDOR_API_URL        = coalesce(var.vendor_api_url, "unset: set vendor_api_url in Terraform")
  }

  depends_on = [
    google_project_iam_member.build,
    google_artifact_registry_repository_iam_member.build_writer,
  ]
}
