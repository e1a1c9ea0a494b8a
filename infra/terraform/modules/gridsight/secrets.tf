# Secret containers only: values are added out of band (`gcloud secrets versions add`, see
# infra/README.md), so no secret value is ever in Terraform state or in this repository.

resource "google_secret_manager_secret" "secret" {
  for_each  = local.secrets
  project   = var.project_id
  secret_id = "${var.prefix}-${each.key}"
  labels    = merge(var.labels, { app = "gridsight" })
  annotations = {
    purpose = each.value
  }

  replication {
    auto {}
  }

  depends_on = [google_project_service.api]
}
