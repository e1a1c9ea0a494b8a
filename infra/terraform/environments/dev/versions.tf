# The root pins what the module pins; `terraform init` writes .terraform.lock.hcl, which is committed.
terraform {
  required_version = ">= 1.6.0, < 2.0.0"

  required_providers {
    fivetran = {
      source  = "fivetran/fivetran"
      version = "1.9.23"
    }
    google = {
      source  = "hashicorp/google"
      version = "6.41.0"
    }
  }
}
