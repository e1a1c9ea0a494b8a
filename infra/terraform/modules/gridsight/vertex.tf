# The endpoint the forecast service calls (GRIDSIGHT_VERTEX_ENDPOINT_ID). Models are uploaded and
# deployed to it by cloudbuild.yaml (infra/cloudbuild/deploy-model.sh), not by Terraform: a model
# version is a build output, like an image.

resource "google_vertex_ai_endpoint" "forecast" {
  #checkov:skip=CKV2_GCP_33:Callable only with aiplatform.user, granted to forecast and chat alone; a private endpoint needs VPC peering and a Cloud Run VPC connector for no gain here
  #checkov:skip=CKV2_GCP_24:Google-managed encryption at rest; CMEK (key ring, rotation, per-agent grants) is an organisation-level choice, see infra/README.md
  project      = var.project_id
  location     = var.region
  name         = var.vertex_endpoint_id
  display_name = "${var.prefix}-forecast"
  description  = "Serves the gridsight forecast model-server container (services/forecast)."
  labels       = merge(var.labels, { app = "gridsight" })
  depends_on   = [google_project_service.api]
}
