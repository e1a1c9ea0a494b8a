# Outputs, alphabetical.

output "analytics_dataset" {
  description = "Dataset id of the modelled tables."
  value       = google_bigquery_dataset.analytics.dataset_id
}

output "dead_letter_subscriptions" {
  description = "Pull subscription of each dead-letter topic, keyed by the push subscription it serves."
  value       = { for topic, dl in local.dead_letter_topics : dl.source_subscription => google_pubsub_subscription.dead_letter[topic].name }
}

output "images" {
  description = "Image names (without tag) cloudbuild.yaml pushes, by service."
  value       = local.images
}

output "model_bucket" {
  description = "Bucket of model artefacts (GRIDSIGHT_MODEL_BUCKET)."
  value       = google_storage_bucket.models.name
}

output "push_service_account" {
  description = "Identity Pub/Sub push tokens are minted for (GRIDSIGHT_PUSH_SERVICE_ACCOUNT)."
  value       = google_service_account.push.email
}

output "raw_dataset" {
  description = "Dataset id Fivetran writes to (the connection's schema)."
  value       = google_bigquery_dataset.raw.dataset_id
}

output "secrets" {
  description = "Secret ids to add values to out of band, by purpose."
  value       = { for key, secret in google_secret_manager_secret.secret : key => secret.secret_id }
}

output "service_urls" {
  description = "Cloud Run URL of each service; the Fivetran webhook goes to <ingest>/webhooks/fivetran."
  value       = { for name, service in google_cloud_run_v2_service.service : name => service.uri }
}

output "topics" {
  description = "Pub/Sub topic names, including the dead-letter topics."
  value       = concat([for t in google_pubsub_topic.topic : t.name], [for t in google_pubsub_topic.dead_letter : t.name])
}

output "vertex_endpoint" {
  description = "Full resource name of the forecast endpoint."
  value       = google_vertex_ai_endpoint.forecast.id
}

output "webhook_url" {
  description = "Where Fivetran's sync_end webhook must point (set automatically when fivetran.enabled)."
  value       = "${google_cloud_run_v2_service.service["ingest"].uri}/webhooks/fivetran"
}
