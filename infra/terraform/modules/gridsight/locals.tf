# Pure derivations from the inputs: no resources, no data sources. Keeping them in one file lets
# tests/infra evaluate exactly these expressions with `terraform console` (no providers needed),
# so the Python checks compare against what Terraform itself computes from infra/events.yaml.

locals {
  topology = yamldecode(file(var.topology_file))

  # Topic names are used verbatim: the code publishes to `Event.TOPIC` (shared/events.py), so a
  # prefix here would silently split the cloud from the code. Topics are project-scoped anyway.
  topics = local.topology.topics

  # Every subscription in the topology is a push subscription to one service's path.
  push_subscriptions = {
    for name, sub in local.topology.subscriptions : name => {
      topic                 = sub.topic
      service               = sub.service
      path                  = sub.path
      ack_deadline_seconds  = sub.ack_deadline_seconds
      min_backoff_seconds   = sub.min_backoff_seconds
      max_backoff_seconds   = sub.max_backoff_seconds
      max_delivery_attempts = sub.max_delivery_attempts
      dead_letter_topic     = "${name}${local.topology.dead_letter.topic_suffix}"
    }
  }

  # One dead-letter topic per push subscription, each drained by a pull subscription of its own.
  dead_letter_topics = {
    for name, sub in local.push_subscriptions : sub.dead_letter_topic => {
      source_subscription = name
      pull_subscription   = "${name}${local.topology.dead_letter.subscription_suffix}"
    }
  }
  dead_letter_retention = "${local.topology.dead_letter.retention_seconds}s"

  # Services that receive pushes; the push invoker account may invoke only these.
  push_targets = toset([for sub in local.push_subscriptions : sub.service])

  # Topics each service may publish to, from the `publisher:` of each topic
  # ("services.<service>.<module>.<function>"): pubsub.publisher is granted on exactly these.
  service_topics = {
    for service in keys(local.topology.services) : service => sort([
      for name, topic in local.topics : name if split(".", topic.publisher)[1] == service
    ])
  }

  # What each service needs beyond the common settings. `writes` = dataEditor on the modelled
  # dataset; `reads_raw` = dataViewer on the Fivetran dataset; `vertex` = the predict-only custom
  # role (iam.tf); `secrets` maps a GRIDSIGHT_* variable to a key of local.secrets; `env` = settings
  # only this service reads, beyond common_env.
  # Sizes come from measured needs (README "Forecasts"/"Anomalies", infra/README.md "Sizing"):
  # forecast peaks at 675 MB for 1,000 devices per event and anomaly, holding every device x 9
  # weeks, at 1,830 MB (bench/bench_push_memory.py), so both take one event per instance (concurrency 1; Pub/Sub push parallelism is
  # served by more instances) with room above the measured peak. ingest's refresh is BigQuery work
  # (the process only waits), chat answers small parameterised queries.
  service_needs = {
    anomaly = {
      concurrency = 1
      cpu         = "2"
      memory      = "4Gi"
      reads_raw   = false
      secrets     = { GRIDSIGHT_ALERT_SMTP_PASSWORD = "alert-smtp-password", GRIDSIGHT_ALERT_WEBHOOK_SECRET = "alert-webhook-secret" }
      env         = local.alert_env
      vertex      = false
      writes      = true
    }
    chat = {
      concurrency = 8
      cpu         = "1"
      memory      = "1Gi"
      reads_raw   = false
      secrets     = { GRIDSIGHT_CHAT_API_KEYS = "chat-api-keys" }
      env         = {}
      vertex      = true
      writes      = false
    }
    forecast = {
      concurrency = 1
      cpu         = "1"
      memory      = "2Gi"
      reads_raw   = false
      secrets     = {}
      env         = {}
      vertex      = true
      writes      = true
    }
    ingest = {
      concurrency = 4
      cpu         = "1"
      memory      = "1Gi"
      reads_raw   = true
      secrets     = { GRIDSIGHT_WEBHOOK_SECRET = "webhook-secret" }
      env         = {}
      vertex      = false
      writes      = true
    }
  }

  # The only service reachable without IAM: it receives the Fivetran webhook (iam.tf says why).
  webhook_service = "ingest"

  # Each service joins its needs with its scaling bounds (var.scaling overrides the instance counts
  # and memory).
  services = {
    for service in keys(local.topology.services) : service => merge(
      local.service_needs[service],
      { max_instances = 3, min_instances = 0 },
      { for key, value in try(var.scaling[service], {}) : key => value if value != null },
    )
  }

  # Cloud Run's request timeout per service = the shortest ack deadline of the subscriptions that
  # push to it, so Pub/Sub never redelivers a push the service is still working on (a push request
  # times out at the ack deadline). Chat has no subscription: 60 s bounds one question.
  service_timeout_seconds = {
    for service in keys(local.topology.services) : service => min(concat(
      [for sub in local.push_subscriptions : sub.ack_deadline_seconds if sub.service == service],
      [service == "chat" ? 60 : 600],
    )...)
  }

  # How each service authenticates pushes (shared/push.py): the webhook service has invoker IAM
  # switched off, so it verifies the token's signature itself ("oidc"); every other service is
  # IAM-protected, Cloud Run has verified the token and forwards it with its signature stripped,
  # so the service checks the forwarded claims ("cloud_run").
  push_auth = {
    for service in keys(local.topology.services) : service => service == local.webhook_service ? "oidc" : "cloud_run"
  }

  # The audience Pub/Sub puts in each push token and the service checks (custom audience on the
  # Cloud Run service): a fixed string avoids a cycle between a service and its own URL.
  push_audience = { for service in keys(local.topology.services) : service => "${var.prefix}-${service}-push" }

  # Secrets get a placeholder version (secrets.tf); values are added out of band (infra/README.md)
  # so none is in state. The placeholder must equal shared/settings.py SECRET_PLACEHOLDER (tested).
  secret_placeholder = "gridsight-placeholder: add a real version with gcloud secrets versions add"
  secrets = {
    alert-smtp-password  = "Password of anomaly_alerts.smtp_username at the SMTP relay (sent only over TLS); unused without a username."
    alert-webhook-secret = "HMAC secret the anomaly service signs outgoing alert webhooks with (X-Gridsight-Signature-256 over timestamp.body); the receiver verifies with the same value."
    chat-api-keys        = "Comma-separated API keys accepted by POST /v1/chat."
    fivetran-api-key     = "Base64 'key:secret' Fivetran API key used by Cloud Build for `fivetran deploy`."
    vendor-api-key       = "The smart-meter vendor API key, passed to the connector's configuration."
    webhook-secret       = "HMAC secret Fivetran signs its webhooks with (X-Fivetran-Signature-256)."
  }

  # The anomaly service's alert settings (services/anomaly/alerts.py AlertSettings, prefix
  # GRIDSIGHT_ALERT_), every field but the secret above. null = leave unset (run.tf drops nulls), so
  # the code's "not configured" applies: with var.anomaly_alerts at its default, nothing is delivered.
  alert_env = {
    GRIDSIGHT_ALERT_ATTEMPTS         = tostring(var.anomaly_alerts.attempts)
    GRIDSIGHT_ALERT_BACKOFF_S        = tostring(var.anomaly_alerts.backoff_s)
    GRIDSIGHT_ALERT_DEDUPE_HOURS     = tostring(var.anomaly_alerts.dedupe_hours)
    GRIDSIGHT_ALERT_MAIL_FROM        = var.anomaly_alerts.mail_from
    GRIDSIGHT_ALERT_MAIL_TO          = var.anomaly_alerts.mail_to
    GRIDSIGHT_ALERT_MIN_SEVERITY     = var.anomaly_alerts.min_severity
    GRIDSIGHT_ALERT_QUIET_END_HOUR   = var.anomaly_alerts.quiet_end_hour == null ? null : tostring(var.anomaly_alerts.quiet_end_hour)
    GRIDSIGHT_ALERT_QUIET_START_HOUR = var.anomaly_alerts.quiet_start_hour == null ? null : tostring(var.anomaly_alerts.quiet_start_hour)
    GRIDSIGHT_ALERT_QUIET_TIMEZONE   = var.anomaly_alerts.quiet_timezone
    GRIDSIGHT_ALERT_SMTP_CA_FILE     = var.anomaly_alerts.smtp_ca_file
    GRIDSIGHT_ALERT_SMTP_HOST        = var.anomaly_alerts.smtp_host
    GRIDSIGHT_ALERT_SMTP_PORT        = tostring(var.anomaly_alerts.smtp_port)
    GRIDSIGHT_ALERT_SMTP_SECURITY    = var.anomaly_alerts.smtp_security
    GRIDSIGHT_ALERT_SMTP_USERNAME    = var.anomaly_alerts.smtp_username
    GRIDSIGHT_ALERT_TIMEOUT_S        = tostring(var.anomaly_alerts.timeout_s)
    GRIDSIGHT_ALERT_WEBHOOK_URL      = var.anomaly_alerts.webhook_url
  }

  # The longest one alert delivery can take: every webhook attempt times out, with tenacity's
  # exponential waits between them (backoff_s x 2^n, capped at 30 x backoff_s; a receiver's
  # Retry-After may lengthen one only within their sum, alert_channels.py), then the e-mail: smtplib
  # bounds each blocking step by timeout_s (connect, greeting, EHLO, STARTTLS, TLS handshake, EHLO,
  # AUTH, MAIL, RCPT, DATA, the message, QUIT: 12). run.tf checks it fits the anomaly service's request timeout with 30 s to spare
  # for the warehouse reads and the MERGE, so Cloud Run never cuts a delivery it would then repeat.
  alert_worst_case_seconds = (
    var.anomaly_alerts.attempts * var.anomaly_alerts.timeout_s
    + sum(concat([0], [for n in range(var.anomaly_alerts.attempts - 1) : min(var.anomaly_alerts.backoff_s * pow(2, n), 30 * var.anomaly_alerts.backoff_s)]))
    + (var.anomaly_alerts.smtp_host == null ? 0 : 12 * var.anomaly_alerts.timeout_s)
  )

  # Images CI builds and pushes (cloudbuild.yaml uses the same names; a test compares them).
  repository_id = var.prefix
  image_names   = concat(sort(keys(local.topology.services)), ["model-server"])
  images = {
    for name in local.image_names : name => "${var.region}-docker.pkg.dev/${var.project_id}/${local.repository_id}/${name}"
  }

  # Settings every service gets in the cloud (shared/settings.py field = GRIDSIGHT_<FIELD>).
  common_env = {
    GRIDSIGHT_ANALYTICS_DATASET      = var.analytics_dataset
    GRIDSIGHT_BQ_LOCATION            = var.bq_location
    GRIDSIGHT_BUS_BACKEND            = "pubsub"
    GRIDSIGHT_CHAT_IAM_PROTECTED     = "true"
    GRIDSIGHT_EMBEDDING_BACKEND      = "vertex"
    GRIDSIGHT_ENDPOINT_BACKEND       = "vertex"
    GRIDSIGHT_FIVETRAN_CONNECTION_ID = var.fivetran_connection_id
    GRIDSIGHT_GCP_PROJECT            = var.project_id
    GRIDSIGHT_GCP_REGION             = var.region
    GRIDSIGHT_GENERATION_BACKEND     = "gemini"
    GRIDSIGHT_HOME                   = "/tmp/gridsight"
    GRIDSIGHT_MODEL_BUCKET           = "${var.project_id}-${var.prefix}-models"
    GRIDSIGHT_RAW_DATASET            = var.raw_dataset
    GRIDSIGHT_VERTEX_ENDPOINT_ID     = var.vertex_endpoint_id
    GRIDSIGHT_WAREHOUSE_BACKEND      = "bigquery"
  }
}
