# Pub/Sub, generated from infra/events.yaml (local.* in locals.tf): nothing here names a topic or a
# subscription, so the topology file stays the one definition. Publishers and subscribers of each
# topic are listed beside it in events.yaml (`publisher:`, `subscribers:`).

resource "google_pubsub_topic" "topic" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption at rest; CMEK (key ring, rotation, per-agent grants) is an organisation-level choice, see infra/README.md
  for_each                   = local.topics
  project                    = var.project_id
  name                       = each.key
  labels                     = merge(var.labels, { app = "gridsight" })
  message_retention_duration = "86400s"
  depends_on                 = [google_project_service.api]
}

# Where a message goes after max_delivery_attempts failed pushes (one per subscription, so a
# poison message is traceable to the consumer that rejected it).
resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption at rest; CMEK (key ring, rotation, per-agent grants) is an organisation-level choice, see infra/README.md
  for_each                   = local.dead_letter_topics
  project                    = var.project_id
  name                       = each.key
  labels                     = merge(var.labels, { app = "gridsight", role = "dead-letter" })
  message_retention_duration = local.dead_letter_retention
  depends_on                 = [google_project_service.api]
}

# Each dead-letter topic keeps what lands on it for inspection and replay (infra/README.md).
resource "google_pubsub_subscription" "dead_letter" {
  for_each                   = local.dead_letter_topics
  project                    = var.project_id
  name                       = each.value.pull_subscription
  topic                      = google_pubsub_topic.dead_letter[each.key].id
  labels                     = merge(var.labels, { app = "gridsight", role = "dead-letter" })
  ack_deadline_seconds       = 60
  message_retention_duration = local.dead_letter_retention
  retain_acked_messages      = false

  expiration_policy {
    ttl = "" # never expires, even when nobody pulls for weeks
  }
}

# Push to the owning service's path with an OIDC token minted for the push identity. Push auth,
# retry and dead-lettering are plain blocks, not dynamic ones: every subscription in the topology
# is a push subscription, and none may exist without them (policies/ checks it).
resource "google_pubsub_subscription" "push" {
  for_each             = local.push_subscriptions
  project              = var.project_id
  name                 = each.key
  topic                = google_pubsub_topic.topic[each.value.topic].id
  labels               = merge(var.labels, { app = "gridsight", service = each.value.service })
  ack_deadline_seconds = each.value.ack_deadline_seconds

  push_config {
    push_endpoint = "${google_cloud_run_v2_service.service[each.value.service].uri}${each.value.path}"

    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = local.push_audience[each.value.service]
    }
  }

  retry_policy {
    minimum_backoff = "${each.value.min_backoff_seconds}s"
    maximum_backoff = "${each.value.max_backoff_seconds}s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.value.dead_letter_topic].id
    max_delivery_attempts = each.value.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_pubsub_topic_iam_member.dead_letter_publisher,
    google_service_account_iam_member.pubsub_token_creator,
  ]
}
