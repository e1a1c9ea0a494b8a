# State in a GCS bucket created once by hand (infra/README.md, "First apply"); its name is passed at
# init time so no environment's bucket is hard-coded:
#   terraform init -backend-config="bucket=<project>-tfstate" -backend-config="prefix=gridsight/dev"
terraform {
  backend "gcs" {}
}
