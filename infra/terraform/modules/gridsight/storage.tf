# Model artefacts: the forecast model server (Vertex AI) loads the newest model under models/.

resource "google_storage_bucket" "models" {
  #checkov:skip=CKV_GCP_62:Object reads are in Cloud Audit Logs (data access); a second log bucket for one artefact bucket adds nothing
  project                     = var.project_id
  name                        = "${var.project_id}-${var.prefix}-models"
  location                    = var.region
  labels                      = merge(var.labels, { app = "gridsight" })
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = !var.deletion_protection

  # Versioning makes a bad model upload recoverable (infra/README.md, rollback).
  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 90
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.api]
}
