# Least privilege, one *_iam_member per need. No basic roles anywhere (a custom checkov policy in
# infra/terraform/policies/ fails the build on roles/owner, roles/editor or roles/viewer).

locals {
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  # (service, topic) pairs for pubsub.publisher, from the topology's `publisher:` fields.
  service_topic_pairs = merge([
    for service, topics in local.service_topics : {
      for topic in topics : "${service}/${topic}" => { service = service, topic = topic }
    }
  ]...)

  # (service, secret) pairs for secretAccessor: each service reads only its own secrets.
  service_secret_pairs = merge([
    for service, cfg in local.services : {
      for env_name, secret in cfg.secrets : "${service}/${secret}" => { service = service, secret = secret }
    }
  ]...)

  # Project-level roles each runtime needs: run BigQuery jobs, write logs and traces.
  runtime_project_roles = ["roles/bigquery.jobUser", "roles/logging.logWriter", "roles/cloudtrace.agent"]
  runtime_project_pairs = merge([
    for service in keys(local.services) : {
      for role in local.runtime_project_roles : "${service}/${role}" => { service = service, role = role }
    }
  ]...)
}

# --- service runtimes ---------------------------------------------------------------------------

resource "google_project_iam_member" "runtime" {
  for_each = local.runtime_project_pairs
  project  = var.project_id
  role     = each.value.role
  member   = google_service_account.run[each.value.service].member
}

# Writers MERGE into the modelled tables; readers (chat) only read them.
resource "google_bigquery_dataset_iam_member" "analytics" {
  for_each   = local.services
  project    = var.project_id
  dataset_id = google_bigquery_dataset.analytics.dataset_id
  role       = each.value.writes ? "roles/bigquery.dataEditor" : "roles/bigquery.dataViewer"
  member     = google_service_account.run[each.key].member
}

# Chat reads the modelled tables but writes only its own retrieval documents.
resource "google_bigquery_table_iam_member" "chat_documents_writer" {
  project    = var.project_id
  dataset_id = google_bigquery_dataset.analytics.dataset_id
  table_id   = google_bigquery_table.chat_documents.table_id
  role       = "roles/bigquery.dataEditor"
  member     = google_service_account.run["chat"].member
}

# Only the refresh (ingest) reads what Fivetran lands; nobody of ours writes it.
resource "google_bigquery_dataset_iam_member" "raw_reader" {
  for_each   = { for service, cfg in local.services : service => cfg if cfg.reads_raw }
  project    = var.project_id
  dataset_id = google_bigquery_dataset.raw.dataset_id
  role       = "roles/bigquery.dataViewer"
  member     = google_service_account.run[each.key].member
}

resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = local.service_topic_pairs
  project  = var.project_id
  topic    = google_pubsub_topic.topic[each.value.topic].name
  role     = "roles/pubsub.publisher"
  member   = google_service_account.run[each.value.service].member
}

# Forecast calls the Vertex endpoint; chat calls Gemini and text embeddings.
resource "google_project_iam_member" "vertex_user" {
  for_each = { for service, cfg in local.services : service => cfg if cfg.vertex }
  project  = var.project_id
  role     = "roles/aiplatform.user"
  member   = google_service_account.run[each.key].member
}

resource "google_secret_manager_secret_iam_member" "runtime" {
  for_each  = local.service_secret_pairs
  project   = var.project_id
  secret_id = google_secret_manager_secret.secret[each.value.secret].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.run[each.value.service].member
}

# --- Pub/Sub push and dead-lettering ------------------------------------------------------------

# The push identity may invoke only the services that have a subscription.
resource "google_cloud_run_v2_service_iam_member" "push_invoker" {
  for_each = local.push_targets
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.service[each.key].name
  role     = "roles/run.invoker"
  member   = google_service_account.push.member
}

# Pub/Sub mints the push OIDC tokens as the push identity.
resource "google_service_account_iam_member" "pubsub_token_creator" {
  service_account_id = google_service_account.push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# Dead-lettering: the Pub/Sub service agent must publish to the dead-letter topic and
# acknowledge (subscribe) on the source subscription, or messages are never forwarded.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.dead_letter_topics
  project  = var.project_id
  topic    = google_pubsub_topic.dead_letter[each.key].name
  role     = "roles/pubsub.publisher"
  member   = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each     = local.push_subscriptions
  project      = var.project_id
  subscription = google_pubsub_subscription.push[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# --- public webhook and chat callers --------------------------------------------------------------

# The ONLY unauthenticated entry point. Fivetran cannot mint Google ID tokens, so its webhook must
# reach ingest without IAM; every request there is HMAC-verified (X-Fivetran-Signature-256) before
# parsing, and the /pubsub/* path on the same service still verifies the push OIDC token (issuer,
# audience, service account) in code (shared/push.py), so only the webhook is effectively public.
resource "google_cloud_run_v2_service_iam_member" "webhook_public" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.service["ingest"].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloud_run_v2_service_iam_member" "chat_invoker" {
  for_each = toset(var.chat_invokers)
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.service["chat"].name
  role     = "roles/run.invoker"
  member   = each.value
}

# --- the model on Vertex AI -----------------------------------------------------------------------

resource "google_storage_bucket_iam_member" "model_server_reader" {
  bucket = google_storage_bucket.models.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.model_server.member
}

# --- Cloud Build ----------------------------------------------------------------------------------

locals {
  build_project_roles = [
    "roles/aiplatform.user",   # upload the model and deploy it to the endpoint
    "roles/logging.logWriter", # build logs (cloudbuild.yaml logs to Cloud Logging only)
  ]
  # Cloud Build deploys revisions that run as these identities, so it must be able to act as them.
  build_acts_as = merge(
    { for service in keys(local.services) : service => google_service_account.run[service].name },
    { model-server = google_service_account.model_server.name },
  )
}

resource "google_project_iam_member" "build" {
  for_each = toset(local.build_project_roles)
  project  = var.project_id
  role     = each.value
  member   = google_service_account.build.member
}

# Roll new images onto the existing services, and nothing else in Cloud Run.
resource "google_cloud_run_v2_service_iam_member" "build_deployer" {
  for_each = local.services
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.service[each.key].name
  role     = "roles/run.developer"
  member   = google_service_account.build.member
}

resource "google_service_account_iam_member" "build_acts_as" {
  for_each           = local.build_acts_as
  service_account_id = each.value
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.build.member
}

resource "google_artifact_registry_repository_iam_member" "build_writer" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.build.member
}

# deploy-model.sh only checks that artefacts exist; Vertex AI copies them with its own agent.
resource "google_storage_bucket_iam_member" "build_models" {
  bucket = google_storage_bucket.models.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.build.member
}

resource "google_secret_manager_secret_iam_member" "build" {
  for_each  = toset(["fivetran-api-key", "vendor-api-key"])
  project   = var.project_id
  secret_id = google_secret_manager_secret.secret[each.key].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.build.member
}

# --- Fivetran (optional) --------------------------------------------------------------------------

# Fivetran's group service account writes the raw dataset and runs its load jobs.
resource "google_bigquery_dataset_iam_member" "fivetran_writer" {
  count      = var.fivetran.enabled ? 1 : 0
  project    = var.project_id
  dataset_id = google_bigquery_dataset.raw.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${var.fivetran.service_account}"
}

resource "google_project_iam_member" "fivetran_jobs" {
  count   = var.fivetran.enabled ? 1 : 0
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = "serviceAccount:${var.fivetran.service_account}"
}
