# The dev environment: one call of the gridsight module. Everything environment-specific is a
# variable (terraform.tfvars, from terraform.tfvars.example); state lives in GCS (backend.tf).

provider "google" {
  project               = var.project_id
  region                = var.region
  user_project_override = true
  billing_project       = var.project_id
}

# Used only when fivetran.enabled; reads FIVETRAN_APIKEY / FIVETRAN_APISECRET from the environment,
# so no Fivetran credential is in a file.
provider "fivetran" {}

module "gridsight" {
  source = "../../modules/gridsight"

  anomaly_alerts                = var.anomaly_alerts
  bq_location                   = var.bq_location
  budget                        = var.budget
  chat_invokers                 = var.chat_invokers
  deletion_protection           = var.deletion_protection
  fivetran                      = var.fivetran
  fivetran_connection_id        = var.fivetran_connection_id
  fivetran_webhook_secret       = var.fivetran_webhook_secret
  github_repository             = var.github_repository
  labels                        = { environment = "dev" }
  notification_channels         = var.notification_channels
  prefix                        = var.prefix
  project_id                    = var.project_id
  raw_partition_expiration_days = var.raw_partition_expiration_days
  region                        = var.region
  scaling                       = var.scaling
  topology_file                 = "${path.root}/../../../events.yaml"
  vendor_api_url                = var.vendor_api_url
}

output "gridsight" {
  description = "Everything the module exposes: service URLs, topics, datasets, images, secrets."
  value       = module.gridsight
}
