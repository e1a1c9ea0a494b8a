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

# Forecast calls the Vertex endpoint; chat calls Gemini and text embeddings. All three are one
# permission, aiplatform.endpoints.predict (Gemini and the embedding models are publisher-model
# endpoints), so they get a role with only that instead of aiplatform.user (which can also create
# and delete endpoints, models and jobs project-wide).
resource "google_project_iam_custom_role" "predict" {
  project     = var.project_id
  role_id     = "${replace(var.prefix, "-", "_")}_predict"
  title       = "gridsight predict"
  description = "Call Vertex AI prediction endpoints (our forecast endpoint, Gemini, text embeddings) and nothing else."
  permissions = ["aiplatform.endpoints.predict"]
}

resource "google_project_iam_member" "vertex_predict" {
  for_each = { for service, cfg in local.services : service => cfg if cfg.vertex }
  project  = var.project_id
  role     = google_project_iam_custom_role.predict.name
  member   = google_service_account.run[each.key].member
}

# One secretAccessor grant per (service, secret) the service references in locals.tf service_needs,
# on that secret only: ingest reads webhook-secret (verifies Fivetran's signature), chat reads
# chat-api-keys, anomaly reads alert-webhook-secret (signs outgoing alerts) and alert-smtp-password
# (logs in at the relay). Forecast reads none.
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

# No `allUsers` grant anywhere: the webhook service has invoker IAM switched off instead
# (run.tf `invoker_iam_disabled`), which domain-restricted sharing does not reject. Its
# /webhooks/fivetran verifies the HMAC signature before parsing and its /pubsub/* path verifies
# the push token's signature in code (shared/push.py, push_auth=oidc).

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

# --- Fivetran ------------------------------------------------------------------------------------

# Fivetran's destination creates the raw dataset's tables and its own staging datasets and runs
# load jobs, so it needs roles/bigquery.user on the project (datasets.create + jobs.create; Fivetran's
# BigQuery destination setup) and dataEditor on the raw dataset. Granted whenever its service account
# is known, whether or not the Fivetran side is managed here (fivetran.enabled). This is the one
# grant to a principal outside the organisation: under domain-restricted sharing an org admin must
# allow it (infra/README.md, step 2), there is no keyless alternative on Fivetran's side.
resource "google_bigquery_dataset_iam_member" "fivetran_writer" {
  count      = var.fivetran.service_account == null ? 0 : 1
  project    = var.project_id
  dataset_id = google_bigquery_dataset.raw.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${var.fivetran.service_account}"
}

resource "google_project_iam_member" "fivetran_bigquery_user" {
  count   = var.fivetran.service_account == null ? 0 : 1
  project = var.project_id
  role    = "roles/bigquery.user"
  member  = "serviceAccount:${var.fivetran.service_account}"
}
