# The dev environment's inputs, alphabetical; descriptions and validation live in the module.

variable "anomaly_alerts" {
  description = "Incident alerts (webhook, e-mail, quiet hours; see the module). Off by default. Defaults live in the module: an attribute left out here is null, which the module replaces by its default."
  type = object({
    attempts         = optional(number)
    backoff_s        = optional(number)
    dedupe_hours     = optional(number)
    mail_from        = optional(string)
    mail_to          = optional(string)
    min_severity     = optional(string)
    quiet_end_hour   = optional(number)
    quiet_start_hour = optional(number)
    quiet_timezone   = optional(string)
    smtp_ca_file     = optional(string)
    smtp_host        = optional(string)
    smtp_port        = optional(number)
    smtp_security    = optional(string)
    smtp_username    = optional(string)
    timeout_s        = optional(number)
    webhook_url      = optional(string)
  })
  default = {}
}

variable "bq_location" {
  description = "BigQuery location of both datasets."
  type        = string
  default     = "EU"
}

variable "budget" {
  description = "Optional monthly billing budget (see the module); null = none."
  type = object({
    amount          = number
    billing_account = string
    currency        = optional(string, "EUR")
    thresholds      = optional(list(number), [0.5, 0.9, 1.0])
  })
  default = null
}

variable "chat_invokers" {
  description = "IAM members allowed to call the chat service."
  type        = list(string)
  default     = []
}

variable "deletion_protection" {
  description = "Protect data and services from `terraform destroy`."
  type        = bool
  default     = true
}

variable "fivetran" {
  description = "Optional Fivetran group, destination and webhook as code (see the module)."
  type = object({
    enabled         = optional(bool, false)
    group_name      = optional(string, "gridsight")
    region          = optional(string, "GCP_EUROPE_WEST1")
    service_account = optional(string)
    webhook_active  = optional(bool, false)
  })
  default = {}
}

variable "fivetran_connection_id" {
  description = "Fivetran connection id whose sync_end webhooks trigger processing."
  type        = string
}

variable "fivetran_webhook_secret" {
  description = "Webhook signing secret; only when fivetran.enabled (then it is in state)."
  type        = string
  default     = null
  sensitive   = true
}

variable "github_repository" {
  description = "Repository whose pushes run cloudbuild.yaml; null = no trigger."
  type = object({
    branch     = optional(string, "^main$")
    connection = string
    name       = string
    owner      = string
  })
  default = null
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channel ids the alerts and the budget notify."
  type        = list(string)
  default     = []
}

variable "prefix" {
  description = "Prefix of every resource name."
  type        = string
  default     = "gridsight"
}

variable "project_id" {
  description = "Google Cloud project to deploy into."
  type        = string
}

variable "raw_partition_expiration_days" {
  description = "Delete raw (Fivetran) partitions older than this many days; null = keep."
  type        = number
  default     = null
}

variable "region" {
  description = "Region of Cloud Run, Artifact Registry, Vertex AI and the model bucket."
  type        = string
  default     = "europe-west1"
}

variable "scaling" {
  description = "Per-service Cloud Run instance bounds (memory defaults to the module's measured sizes)."
  type = map(object({
    max_instances = number
    memory        = optional(string)
    min_instances = optional(number, 0)
  }))
  default = {}
}

variable "vendor_api_url" {
  description = "Base URL of the smart-meter vendor API the connector syncs from."
  type        = string
  default     = null
}
