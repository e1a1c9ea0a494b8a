# Raw (Fivetran's) and modelled datasets. Fivetran creates and evolves the raw tables itself; we
# create the modelled ones so partitioning, clustering and deletion protection are reviewed here.
# Each table's columns, DAY-partitioning column and clustering come from the warehouse contracts
# (shared/sql/{marts,tables}/*.yml) via tables.json, written by `python -m infra.terraform_tables`
# (tests/infra fails when it is stale), so Terraform and the warehouse DDL cannot drift apart.

locals {
  modelled_tables = jsondecode(file("${path.module}/tables.json"))
}

resource "google_bigquery_dataset" "raw" {
  #checkov:skip=CKV_GCP_81:Google-managed encryption at rest; CMEK (key ring, rotation, per-agent grants) is an organisation-level choice, see infra/README.md
  project       = var.project_id
  dataset_id    = var.raw_dataset
  friendly_name = "gridsight raw (Fivetran)"
  description   = "Landed by the Fivetran connector (fivetran_connector/); never modified by gridsight."
  location      = var.bq_location
  labels        = merge(var.labels, { app = "gridsight", layer = "raw" })
  # Raw history can be bounded (the modelled tables keep theirs): applies to partitioned tables.
  default_partition_expiration_ms = var.raw_partition_expiration_days == null ? null : var.raw_partition_expiration_days * 86400000
  # Fivetran owns these tables; a dataset delete must never take them along.
  delete_contents_on_destroy = false
  depends_on                 = [google_project_service.api]
}

resource "google_bigquery_dataset" "analytics" {
  #checkov:skip=CKV_GCP_81:Google-managed encryption at rest; CMEK (key ring, rotation, per-agent grants) is an organisation-level choice, see infra/README.md
  project                    = var.project_id
  dataset_id                 = var.analytics_dataset
  friendly_name              = "gridsight energy analytics"
  description                = "Modelled tables refreshed by MERGE from the raw dataset (shared/sql)."
  location                   = var.bq_location
  labels                     = merge(var.labels, { app = "gridsight", layer = "modelled" })
  delete_contents_on_destroy = false
  depends_on                 = [google_project_service.api]
}

resource "google_bigquery_table" "modelled" {
  #checkov:skip=CKV_GCP_80:Google-managed encryption at rest; CMEK (key ring, rotation, per-agent grants) is an organisation-level choice, see infra/README.md
  for_each            = local.modelled_tables
  project             = var.project_id
  dataset_id          = google_bigquery_dataset.analytics.dataset_id
  table_id            = each.key
  description         = each.value.description
  labels              = merge(var.labels, { app = "gridsight" })
  schema              = jsonencode(each.value.schema)
  clustering          = length(each.value.cluster_by) > 0 ? each.value.cluster_by : null
  deletion_protection = var.deletion_protection

  dynamic "time_partitioning" {
    for_each = each.value.partition_by == null ? [] : [each.value.partition_by]
    content {
      type  = "DAY"
      field = time_partitioning.value
    }
  }
}

# The chat service's retrieval documents with their Vertex embeddings, searched with VECTOR_SEARCH
# (services/chat/index.py rewrites it whole with a WRITE_TRUNCATE load when the documents change).
# Created here so chat can be granted write on this one table instead of the whole dataset.
resource "google_bigquery_table" "chat_documents" {
  #checkov:skip=CKV_GCP_80:Google-managed encryption at rest; CMEK (key ring, rotation, per-agent grants) is an organisation-level choice, see infra/README.md
  project             = var.project_id
  dataset_id          = google_bigquery_dataset.analytics.dataset_id
  table_id            = "chat_documents"
  description         = "Chat retrieval documents and their text embeddings (services/chat/index.py)."
  labels              = merge(var.labels, { app = "gridsight", service = "chat" })
  deletion_protection = var.deletion_protection
  schema = jsonencode([
    { name = "doc_id", type = "STRING", mode = "NULLABLE" },
    { name = "kind", type = "STRING", mode = "NULLABLE" },
    { name = "title", type = "STRING", mode = "NULLABLE" },
    { name = "text", type = "STRING", mode = "NULLABLE" },
    { name = "meta", type = "STRING", mode = "NULLABLE" },
    { name = "fingerprint", type = "STRING", mode = "NULLABLE" },
    { name = "embedding", type = "FLOAT64", mode = "REPEATED" },
  ])
}
