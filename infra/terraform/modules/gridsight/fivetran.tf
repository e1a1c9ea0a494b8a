# Optional (var.fivetran.enabled): the Fivetran side as code. The group is the destination's
# container; the connection itself is created by `fivetran deploy` in cloudbuild.yaml (the
# Connector SDK packages fivetran_connector/), and the group webhook tells ingest when a sync ends.

resource "fivetran_group" "gridsight" {
  count = var.fivetran.enabled ? 1 : 0
  name  = var.fivetran.group_name
}

resource "fivetran_destination" "bigquery" {
  count              = var.fivetran.enabled ? 1 : 0
  group_id           = fivetran_group.gridsight[0].id
  service            = "big_query"
  region             = var.fivetran.region # where Fivetran processes data; keep it near bq_location
  time_zone_offset   = "0"
  run_setup_tests    = true
  trust_certificates = false
  trust_fingerprints = false

  config {
    project_id        = var.project_id
    data_set_location = var.bq_location
  }

  depends_on = [
    google_bigquery_dataset_iam_member.fivetran_writer,
    google_project_iam_member.fivetran_bigquery_user,
  ]
}

# Fivetran signs each delivery with this secret (HMAC-SHA256, X-Fivetran-Signature-256); ingest
# reads the same value from Secret Manager (GRIDSIGHT_WEBHOOK_SECRET).
resource "fivetran_webhook" "sync_end" {
  count    = var.fivetran.enabled ? 1 : 0
  type     = "group"
  group_id = fivetran_group.gridsight[0].id
  url      = "${google_cloud_run_v2_service.service["ingest"].uri}/webhooks/fivetran"
  events   = ["sync_end"]
  # Off until ingest runs its real image: before the first build it runs bootstrap_image, which
  # answers 200 to anything, so a delivery then would be acknowledged and lost (infra/README.md).
  active    = var.fivetran.webhook_active
  secret    = var.fivetran_webhook_secret
  run_tests = false

  lifecycle {
    precondition {
      condition     = var.fivetran_webhook_secret != null
      error_message = "fivetran_webhook_secret is required when fivetran.enabled is true; it must equal the webhook-secret value in Secret Manager."
    }
  }
}
