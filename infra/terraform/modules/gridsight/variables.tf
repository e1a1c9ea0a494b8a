# Inputs, alphabetical. Few, typed, with defaults where one is safe (cloud-foundation-fabric style).

variable "alert_thresholds" {
  description = "Alert thresholds (monitoring.tf): oldest unacked push message age, Cloud Run 5xx ratio, hours without a forecast refresh (Cloud Monitoring allows absence windows up to 23.5 h)."
  type = object({
    error_ratio            = optional(number, 0.05)
    forecast_stale_hours   = optional(number, 6)
    oldest_unacked_seconds = optional(number, 1800)
  })
  default  = {}
  nullable = false
  validation {
    condition     = var.alert_thresholds.error_ratio > 0 && var.alert_thresholds.error_ratio < 1 && var.alert_thresholds.forecast_stale_hours >= 1 && var.alert_thresholds.forecast_stale_hours <= 23 && var.alert_thresholds.oldest_unacked_seconds >= 60
    error_message = "alert_thresholds: 0 < error_ratio < 1, 1 <= forecast_stale_hours <= 23, oldest_unacked_seconds >= 60."
  }
}

variable "analytics_dataset" {
  description = "BigQuery dataset for the modelled tables (shared/sql); GRIDSIGHT_ANALYTICS_DATASET."
  type        = string
  default     = "energy_analytics"
  nullable    = false
  validation {
    condition     = can(regex("^[A-Za-z_][A-Za-z0-9_]*$", var.analytics_dataset)) && length(var.analytics_dataset) <= 1024
    error_message = "analytics_dataset must be a valid BigQuery dataset id (letters, digits, underscores)."
  }
}

variable "anomaly_alerts" {
  description = "Incident alerts from the anomaly service (services/anomaly/alerts.py, GRIDSIGHT_ALERT_*; README \"Alerts\"). Off by default: without webhook_url and smtp_host nothing is delivered (incidents record 'no_channel'). The webhook's signing secret is the <prefix>-alert-webhook-secret secret and the relay password (with smtp_username) <prefix>-alert-smtp-password, both added out of band (infra/README.md step 13); while one holds the placeholder its channel is skipped. Quiet hours (local to quiet_timezone, end exclusive) hold back all but high; dedupe_hours = one alert per device per window; attempts x timeout_s (+ backoff, + 12 x timeout_s for e-mail) must fit the anomaly service's request timeout (checked in run.tf). smtp_port defaults to 587 (Google Cloud blocks outbound 25). smtp_security auto = implicit TLS on 465, else STARTTLS when offered and required with a login; certificates are always verified (smtp_ca_file: a PEM bundle in the image for a private CA)."
  type = object({
    attempts         = optional(number, 4)
    backoff_s        = optional(number, 1)
    dedupe_hours     = optional(number, 24)
    mail_from        = optional(string, "gridsight@localhost")
    mail_to          = optional(string)
    min_severity     = optional(string, "medium")
    quiet_end_hour   = optional(number)
    quiet_start_hour = optional(number)
    quiet_timezone   = optional(string, "UTC")
    smtp_ca_file     = optional(string)
    smtp_host        = optional(string)
    smtp_port        = optional(number, 587)
    smtp_security    = optional(string, "auto")
    smtp_username    = optional(string)
    timeout_s        = optional(number, 5)
    webhook_url      = optional(string)
  })
  default  = {}
  nullable = false
  validation {
    condition     = var.anomaly_alerts.webhook_url == null || can(regex("^https://[^/\\s]+", var.anomaly_alerts.webhook_url))
    error_message = "anomaly_alerts.webhook_url must be an https:// URL (incident details leave the project), or null for no webhook."
  }
  validation {
    condition     = contains(["low", "medium", "high"], var.anomaly_alerts.min_severity)
    error_message = "anomaly_alerts.min_severity must be low, medium or high."
  }
  validation {
    condition     = (var.anomaly_alerts.quiet_start_hour == null) == (var.anomaly_alerts.quiet_end_hour == null) && alltrue([for h in [var.anomaly_alerts.quiet_start_hour, var.anomaly_alerts.quiet_end_hour] : h == null ? true : h >= 0 && h <= 23 && floor(h) == h])
    error_message = "anomaly_alerts.quiet_start_hour and quiet_end_hour are set together (whole hours 0-23) or not at all."
  }
  validation {
    condition     = (var.anomaly_alerts.smtp_host == null) == (var.anomaly_alerts.mail_to == null) && var.anomaly_alerts.smtp_port >= 1 && var.anomaly_alerts.smtp_port <= 65535
    error_message = "anomaly_alerts.smtp_host and mail_to are set together (e-mail needs both) or not at all; smtp_port is 1-65535."
  }
  validation {
    condition     = contains(["auto", "starttls", "tls", "none"], var.anomaly_alerts.smtp_security) && !(var.anomaly_alerts.smtp_username != null && var.anomaly_alerts.smtp_security == "none")
    error_message = "anomaly_alerts.smtp_security must be auto, starttls, tls or none, and not none with an smtp_username (the password would cross the network in clear)."
  }
  validation {
    condition     = var.anomaly_alerts.smtp_port != 25
    error_message = "anomaly_alerts.smtp_port must not be 25: Google Cloud blocks outbound connections to port 25 on external addresses (and this module gives Cloud Run no VPC egress), so every e-mail would time out. Use the relay's submission port (587, or e.g. 2525)."
  }
  validation {
    condition     = var.anomaly_alerts.attempts >= 1 && var.anomaly_alerts.attempts <= 10 && floor(var.anomaly_alerts.attempts) == var.anomaly_alerts.attempts && var.anomaly_alerts.timeout_s > 0 && var.anomaly_alerts.backoff_s >= 0 && var.anomaly_alerts.dedupe_hours >= 0
    error_message = "anomaly_alerts: attempts a whole number 1-10, timeout_s > 0, backoff_s >= 0, dedupe_hours >= 0."
  }
}

variable "bootstrap_image" {
  description = "Image the Cloud Run services start with before CI deploys theirs; CI owns the image after that (ignore_changes)."
  type        = string
  default     = "us-docker.pkg.dev/cloudrun/container/hello"
  nullable    = false
}

variable "bq_location" {
  description = "BigQuery location of both datasets; must match the Fivetran destination's."
  type        = string
  default     = "EU"
  nullable    = false
  validation {
    condition     = length(var.bq_location) > 0
    error_message = "bq_location must not be empty."
  }
}

variable "budget" {
  description = "Optional monthly billing budget for the project: alerts at each threshold (fractions of amount) to notification_channels and as Pub/Sub messages on <prefix>-budget-alerts; null = no budget."
  type = object({
    amount          = number
    billing_account = string
    currency        = optional(string, "EUR")
    thresholds      = optional(list(number), [0.5, 0.9, 1.0])
  })
  default = null
  validation {
    condition     = var.budget == null || try(var.budget.amount > 0 && alltrue([for t in var.budget.thresholds : t > 0]), false)
    error_message = "budget.amount and every threshold must be positive."
  }
}

variable "chat_invokers" {
  description = "IAM members (e.g. group:analysts@example.com) allowed to call the chat service; it also checks an API key."
  type        = list(string)
  default     = []
  nullable    = false
  validation {
    condition     = alltrue([for m in var.chat_invokers : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "chat_invokers must not contain allUsers or allAuthenticatedUsers: chat is not public."
  }
}

variable "chat_slo" {
  description = "Chat SLOs over a rolling 28 days: availability (share of requests not 5xx) and latency (share under latency_ms); burn-rate alerts go to notification_channels."
  type = object({
    availability = optional(number, 0.99)
    latency_goal = optional(number, 0.95)
    latency_ms   = optional(number, 3000)
  })
  default  = {}
  nullable = false
  validation {
    condition     = var.chat_slo.availability > 0 && var.chat_slo.availability < 1 && var.chat_slo.latency_goal > 0 && var.chat_slo.latency_goal < 1 && var.chat_slo.latency_ms > 0
    error_message = "chat_slo goals must be between 0 and 1 (exclusive) and latency_ms positive."
  }
}

variable "deletion_protection" {
  description = "Protect datasets, tables, services and the bucket from `terraform destroy`; turn off only to tear down a throwaway project."
  type        = bool
  default     = true
  nullable    = false
}

variable "fivetran" {
  description = "Fivetran: service_account (the destination's GCP service account, shown on Fivetran's BigQuery setup page) gets its BigQuery roles whenever set; enabled = also manage the group, BigQuery destination and sync_end webhook here; webhook_active = switch the webhook on (only after the first build deployed ingest's real image). The connection itself is created by `fivetran deploy` in Cloud Build."
  type = object({
    enabled         = optional(bool, false)
    group_name      = optional(string, "gridsight")
    region          = optional(string, "GCP_EUROPE_WEST1")
    service_account = optional(string)
    webhook_active  = optional(bool, false)
  })
  default  = {}
  nullable = false
  validation {
    condition     = !var.fivetran.enabled || var.fivetran.service_account != null
    error_message = "fivetran.service_account (the Fivetran group's GCP service account) is required when fivetran.enabled is true."
  }
}

variable "fivetran_connection_id" {
  description = "Fivetran connection id whose sync_end webhooks trigger processing (known after the first `fivetran deploy`); GRIDSIGHT_FIVETRAN_CONNECTION_ID."
  type        = string
  nullable    = false
  validation {
    condition     = can(regex("^[a-z0-9_]+$", var.fivetran_connection_id))
    error_message = "fivetran_connection_id must be a Fivetran connection id (lower-case letters, digits, underscores)."
  }
}

variable "fivetran_webhook_secret" {
  description = "Webhook signing secret, needed only when fivetran.enabled (the Fivetran API requires it in the webhook resource, so it is then in state). Keep null otherwise."
  type        = string
  default     = null
  sensitive   = true
}

variable "github_repository" {
  description = "GitHub repository whose pushes to `branch` run cloudbuild.yaml, through a Cloud Build 2nd-gen connection named `connection` that already exists in var.region (`gcloud builds connections create github <connection> --region=<region>`, authorised once in a browser: infra/README.md step 3); null = no trigger. A regional trigger can only use a repository linked in its own region."
  type = object({
    branch     = optional(string, "^main$")
    connection = string
    name       = string
    owner      = string
  })
  default = null
}

variable "labels" {
  description = "Labels added to every labelled resource."
  type        = map(string)
  default     = {}
  nullable    = false
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channel ids (projects/<p>/notificationChannels/<id>) every alert and the budget notify."
  type        = list(string)
  default     = []
  nullable    = false
  validation {
    condition     = alltrue([for c in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", c))])
    error_message = "notification_channels must be full ids: projects/<project>/notificationChannels/<id>."
  }
}

variable "prefix" {
  description = "Prefix of every resource name (service accounts, services, buckets, secrets); never random."
  type        = string
  default     = "gridsight"
  nullable    = false
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,11}$", var.prefix))
    error_message = "prefix must be 2-12 characters: a lower-case letter, then lower-case letters, digits or hyphens (service account ids are at most 30)."
  }
}

variable "project_id" {
  description = "Google Cloud project to deploy into; GRIDSIGHT_GCP_PROJECT."
  type        = string
  nullable    = false
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a valid Google Cloud project id."
  }
}

variable "raw_dataset" {
  description = "BigQuery dataset Fivetran lands the raw tables in (the connection's schema name); GRIDSIGHT_RAW_DATASET."
  type        = string
  default     = "gridsight_raw"
  nullable    = false
  validation {
    condition     = can(regex("^[A-Za-z_][A-Za-z0-9_]*$", var.raw_dataset)) && length(var.raw_dataset) <= 1024
    error_message = "raw_dataset must be a valid BigQuery dataset id."
  }
}

variable "raw_partition_expiration_days" {
  description = "Default partition expiration of the raw (Fivetran) dataset in days: partitions of raw tables older than this are deleted; the modelled tables keep their history. null = keep forever."
  type        = number
  default     = null
  validation {
    condition     = var.raw_partition_expiration_days == null || try(var.raw_partition_expiration_days >= 1, false)
    error_message = "raw_partition_expiration_days must be at least 1 (or null)."
  }
}

variable "region" {
  description = "Region of Cloud Run, Artifact Registry, Vertex AI and the model bucket; GRIDSIGHT_GCP_REGION."
  type        = string
  default     = "europe-west1"
  nullable    = false
  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region must look like europe-west1."
  }
}

variable "scaling" {
  description = "Per-service Cloud Run instance bounds (and optionally memory), keyed by service name; services not listed get 0..3 instances and the measured sizes in locals.tf service_needs."
  type = map(object({
    max_instances = number
    memory        = optional(string)
    min_instances = optional(number, 0)
  }))
  default  = {}
  nullable = false
  validation {
    condition     = alltrue([for s in values(var.scaling) : s.min_instances >= 0 && s.max_instances >= 1 && s.min_instances <= s.max_instances && s.max_instances <= 100])
    error_message = "scaling needs 0 <= min_instances <= max_instances <= 100 and max_instances >= 1."
  }
}

variable "topology_file" {
  description = "Path of infra/events.yaml, the one definition of topics and subscriptions (also read by the local runtime)."
  type        = string
  nullable    = false
  validation {
    condition     = endswith(var.topology_file, ".yaml") || endswith(var.topology_file, ".yml")
    error_message = "topology_file must be the YAML topology file (infra/events.yaml)."
  }
}

variable "vendor_api_url" {
  description = "Base URL of the smart-meter vendor API, passed to the connector's configuration by cloudbuild.yaml (`fivetran deploy`); its key is the vendor-api-key secret."
  type        = string
  default     = null
  validation {
    condition     = var.vendor_api_url == null || can(regex("^https://", var.vendor_api_url))
    error_message = "vendor_api_url must be an https:// URL."
  }
}

variable "vertex_endpoint_id" {
  description = "Numeric id of the Vertex AI endpoint serving the forecast model (chosen by us, unique per project and region); GRIDSIGHT_VERTEX_ENDPOINT_ID. CreateEndpoint allows a numeric id of at most 9 digits without leading zeros (REST reference, projects.locations.endpoints.create, endpointId)."
  type        = string
  default     = "730000001"
  nullable    = false
  validation {
    condition     = can(regex("^[1-9][0-9]{0,8}$", var.vertex_endpoint_id))
    error_message = "vertex_endpoint_id must be numeric, without leading zeros, at most 9 digits (Vertex AI CreateEndpoint rule for numeric ids)."
  }
}
