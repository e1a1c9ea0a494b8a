# Secret containers, each with one placeholder version so Cloud Run's `latest` reference resolves on
# the first apply (a revision whose secret has no version fails to create, and everything depending
# on the service would be skipped). The placeholder is a public constant, not a secret: the code
# refuses it (shared/settings.py SECRET_PLACEHOLDER: the webhook answers 503 so Fivetran retries,
# chat answers 503), so a service is never "working" on it. Real values are added out of band
# (`gcloud secrets versions add`, infra/README.md), so no secret value is ever in Terraform state.

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

resource "google_secret_manager_secret_version" "placeholder" {
  for_each    = local.secrets
  secret      = google_secret_manager_secret.secret[each.key].id
  secret_data = local.secret_placeholder
  # Real versions are added after this one; destroying the placeholder later must not disable them.
  deletion_policy = "ABANDON"

  lifecycle {
    ignore_changes = [enabled]
  }
}
