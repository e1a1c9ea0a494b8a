# Operations: what a platform team expects after `terraform apply` (#14). Alerts go to
# var.notification_channels (existing channel ids: e-mail, PagerDuty, Slack are made once in the
# console or by the platform's own Terraform). Every condition reads metrics Google publishes for the
# resources above, or the log-based metric below, which counts the services' structured log lines.

locals {
  alert_common = {
    notification_channels = var.notification_channels
    user_labels           = merge(var.labels, { app = "gridsight" })
  }
  # Cloud Run services each alert and the dashboard watch (all of ours).
  run_services = { for service in keys(local.services) : service => "${var.prefix}-${service}" }
}

# One point per forecast push handled (shared/push.py logs "push handled" with handler=forecast);
# absent for N hours means forecasts stopped being refreshed, whatever the cause.
resource "google_logging_metric" "forecasts_refreshed" {
  project     = var.project_id
  name        = "${var.prefix}/forecasts_refreshed"
  description = "Forecast pushes handled successfully (structured log line 'push handled', handler=forecast)."
  filter      = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.run_services["forecast"]}\" AND jsonPayload.message=\"push handled\" AND jsonPayload.handler=\"forecast\""
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
  depends_on = [google_project_service.api]
}

# A dead-letter subscription holding anything means an event failed max_delivery_attempts times.
resource "google_monitoring_alert_policy" "dead_letters" {
  for_each              = local.dead_letter_topics
  project               = var.project_id
  display_name          = "gridsight: messages in ${each.value.pull_subscription}"
  combiner              = "OR"
  notification_channels = local.alert_common.notification_channels
  user_labels           = local.alert_common.user_labels
  documentation {
    content   = "A ${each.value.source_subscription} push failed every attempt and was dead-lettered. Inspect and replay: infra/README.md, Operating it."
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "undelivered messages > 0"
    condition_threshold {
      filter          = "resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${each.value.pull_subscription}\" AND metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }
  depends_on = [google_project_service.api]
}

# A push subscription whose oldest message waits too long: a service is failing or too slow.
resource "google_monitoring_alert_policy" "oldest_unacked" {
  for_each              = local.push_subscriptions
  project               = var.project_id
  display_name          = "gridsight: ${each.key} oldest unacked message > ${var.alert_thresholds.oldest_unacked_seconds} s"
  combiner              = "OR"
  notification_channels = local.alert_common.notification_channels
  user_labels           = local.alert_common.user_labels
  documentation {
    content   = "Pushes to ${each.value.service} are not being acknowledged. Check the service's 5xx and logs (correlation_id)."
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "oldest_unacked_message_age"
    condition_threshold {
      filter          = "resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${each.key}\" AND metric.type=\"pubsub.googleapis.com/subscription/oldest_unacked_message_age\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_thresholds.oldest_unacked_seconds
      duration        = "300s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }
  depends_on = [google_project_service.api]
}

# Share of a service's requests answered 5xx (503 is our "retry later"; sustained, it is an outage).
resource "google_monitoring_alert_policy" "run_5xx_ratio" {
  for_each              = local.run_services
  project               = var.project_id
  display_name          = "gridsight: ${each.value} 5xx ratio > ${var.alert_thresholds.error_ratio}"
  combiner              = "OR"
  notification_channels = local.alert_common.notification_channels
  user_labels           = local.alert_common.user_labels
  documentation {
    content   = "More than ${var.alert_thresholds.error_ratio * 100} % of ${each.value}'s requests failed for 10 minutes."
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "5xx / all requests"
    condition_threshold {
      filter             = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${each.value}\" AND metric.type=\"run.googleapis.com/request_count\" AND metric.labels.response_code_class=\"5xx\""
      denominator_filter = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${each.value}\" AND metric.type=\"run.googleapis.com/request_count\""
      comparison         = "COMPARISON_GT"
      threshold_value    = var.alert_thresholds.error_ratio
      duration           = "600s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
      }
      denominator_aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }
  depends_on = [google_project_service.api]
}

resource "google_monitoring_alert_policy" "forecasts_stale" {
  project               = var.project_id
  display_name          = "gridsight: no forecasts refreshed for ${var.alert_thresholds.forecast_stale_hours} h"
  combiner              = "OR"
  notification_channels = local.alert_common.notification_channels
  user_labels           = local.alert_common.user_labels
  documentation {
    content   = "No forecast push succeeded for ${var.alert_thresholds.forecast_stale_hours} hours: syncs stopped, the refresh publishes nothing, or forecast fails (no deployed model?)."
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "forecasts_refreshed absent"
    condition_absent {
      filter   = "resource.type=\"cloud_run_revision\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.forecasts_refreshed.name}\""
      duration = "${var.alert_thresholds.forecast_stale_hours * 3600}s"
      aggregations {
        alignment_period   = "3600s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }
}

# Incident alerts are configured but a channel reaches nobody: the anomaly service skipped the
# webhook (or the e-mail) because its secret is still the placeholder version
# (services/anomaly/alerts.py logs these lines).
resource "google_monitoring_alert_policy" "alert_secret_placeholder" {
  project               = var.project_id
  display_name          = "gridsight: incident alerts skipped, an alert secret is the placeholder"
  combiner              = "OR"
  notification_channels = local.alert_common.notification_channels
  user_labels           = local.alert_common.user_labels
  documentation {
    content   = "The anomaly service did not send an incident webhook (${var.prefix}-alert-webhook-secret) or e-mail (${var.prefix}-alert-smtp-password, with anomaly_alerts.smtp_username): the secret holds only the placeholder. Add the real value (infra/README.md, step 13); with no other channel incidents meanwhile record alert_status 'secret_placeholder'."
    mime_type = "text/markdown"
  }
  conditions {
    display_name = "alert webhook or e-mail skipped"
    condition_matched_log {
      filter = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.run_services["anomaly"]}\" AND severity=WARNING AND (jsonPayload.message:\"alert webhook skipped\" OR jsonPayload.message:\"alert e-mail skipped\")"
    }
  }
  # Log-match conditions notify at most once per period.
  alert_strategy {
    notification_rate_limit {
      period = "3600s"
    }
  }
  depends_on = [google_project_service.api]
}

# --- chat SLO: availability and latency, with burn-rate alerts ------------------------------------

resource "google_monitoring_custom_service" "chat" {
  project      = var.project_id
  service_id   = "${var.prefix}-chat"
  display_name = "gridsight chat API"
  user_labels  = local.alert_common.user_labels
  depends_on   = [google_project_service.api]
}

resource "google_monitoring_slo" "chat_availability" {
  project             = var.project_id
  service             = google_monitoring_custom_service.chat.service_id
  slo_id              = "availability"
  display_name        = "chat: ${var.chat_slo.availability * 100} % of requests not 5xx (28 days)"
  goal                = var.chat_slo.availability
  rolling_period_days = 28
  request_based_sli {
    good_total_ratio {
      bad_service_filter   = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.run_services["chat"]}\" AND metric.type=\"run.googleapis.com/request_count\" AND metric.labels.response_code_class=\"5xx\""
      total_service_filter = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.run_services["chat"]}\" AND metric.type=\"run.googleapis.com/request_count\""
    }
  }
}

resource "google_monitoring_slo" "chat_latency" {
  project             = var.project_id
  service             = google_monitoring_custom_service.chat.service_id
  slo_id              = "latency"
  display_name        = "chat: ${var.chat_slo.latency_goal * 100} % of requests under ${var.chat_slo.latency_ms} ms (28 days)"
  goal                = var.chat_slo.latency_goal
  rolling_period_days = 28
  request_based_sli {
    distribution_cut {
      distribution_filter = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.run_services["chat"]}\" AND metric.type=\"run.googleapis.com/request_latencies\""
      range {
        max = var.chat_slo.latency_ms
      }
    }
  }
}

# Multi-window burn rate (Google SRE workbook): 14.4x over 1 h pages (2 % of a 28-day budget in an
# hour), 6x over 6 h too (5 % in 6 h).
locals {
  chat_slos = {
    availability = google_monitoring_slo.chat_availability.name
    latency      = google_monitoring_slo.chat_latency.name
  }
  burn_windows = { fast = { window = "3600s", rate = 14.4 }, slow = { window = "21600s", rate = 6 } }
}

resource "google_monitoring_alert_policy" "chat_burn_rate" {
  for_each              = local.chat_slos
  project               = var.project_id
  display_name          = "gridsight: chat ${each.key} SLO burning its error budget"
  combiner              = "OR"
  notification_channels = local.alert_common.notification_channels
  user_labels           = local.alert_common.user_labels
  documentation {
    content   = "The chat ${each.key} SLO's error budget burns at >= 14.4x (1 h) or >= 6x (6 h)."
    mime_type = "text/markdown"
  }
  dynamic "conditions" {
    for_each = local.burn_windows
    content {
      display_name = "${conditions.key} burn (${conditions.value.window})"
      condition_threshold {
        filter          = "select_slo_burn_rate(\"${each.value}\", \"${conditions.value.window}\")"
        comparison      = "COMPARISON_GT"
        threshold_value = conditions.value.rate
        duration        = "0s"
      }
    }
  }
}

# --- one dashboard for the pipeline -----------------------------------------------------------------

resource "google_monitoring_dashboard" "pipeline" {
  project = var.project_id
  dashboard_json = jsonencode({
    displayName = "gridsight pipeline"
    mosaicLayout = {
      columns = 12
      tiles = [
        for i, tile in [
          { title = "Undelivered messages per subscription", metric = "pubsub.googleapis.com/subscription/num_undelivered_messages", resource = "pubsub_subscription", aligner = "ALIGN_MAX", group = "resource.label.subscription_id" },
          { title = "Oldest unacked message age (s)", metric = "pubsub.googleapis.com/subscription/oldest_unacked_message_age", resource = "pubsub_subscription", aligner = "ALIGN_MAX", group = "resource.label.subscription_id" },
          { title = "Cloud Run requests by service and code class", metric = "run.googleapis.com/request_count", resource = "cloud_run_revision", aligner = "ALIGN_RATE", group = "metric.label.response_code_class" },
          { title = "Cloud Run request latency p95 (ms)", metric = "run.googleapis.com/request_latencies", resource = "cloud_run_revision", aligner = "ALIGN_PERCENTILE_95", group = "resource.label.service_name" },
          { title = "Instances per service", metric = "run.googleapis.com/container/instance_count", resource = "cloud_run_revision", aligner = "ALIGN_MAX", group = "resource.label.service_name" },
          { title = "Forecast pushes handled", metric = "logging.googleapis.com/user/${google_logging_metric.forecasts_refreshed.name}", resource = "cloud_run_revision", aligner = "ALIGN_SUM", group = "resource.label.service_name" },
          ] : {
          xPos   = (i % 2) * 6
          yPos   = floor(i / 2) * 4
          width  = 6
          height = 4
          widget = {
            title = tile.title
            xyChart = {
              dataSets = [{
                plotType = "LINE"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = "metric.type=\"${tile.metric}\" resource.type=\"${tile.resource}\""
                    aggregation = {
                      alignmentPeriod    = "300s"
                      perSeriesAligner   = tile.aligner
                      crossSeriesReducer = "REDUCE_SUM"
                      groupByFields      = [tile.group]
                    }
                  }
                }
              }]
            }
          }
        }
      ]
    }
  })
  depends_on = [google_project_service.api]
}

# --- optional billing budget with a Pub/Sub notification ------------------------------------------

resource "google_pubsub_topic" "budget" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption at rest; CMEK (key ring, rotation, per-agent grants) is an organisation-level choice, see infra/README.md
  count                      = var.budget == null ? 0 : 1
  project                    = var.project_id
  name                       = "${var.prefix}-budget-alerts"
  labels                     = merge(var.labels, { app = "gridsight", role = "budget" })
  message_retention_duration = "604800s"
  depends_on                 = [google_project_service.api]
}

resource "google_billing_budget" "project" {
  count           = var.budget == null ? 0 : 1
  billing_account = var.budget.billing_account
  display_name    = "${var.prefix} monthly budget"
  budget_filter {
    projects = ["projects/${data.google_project.this.number}"]
  }
  amount {
    specified_amount {
      currency_code = var.budget.currency
      units         = tostring(var.budget.amount)
    }
  }
  dynamic "threshold_rules" {
    for_each = var.budget.thresholds
    content {
      threshold_percent = threshold_rules.value
    }
  }
  all_updates_rule {
    pubsub_topic                     = google_pubsub_topic.budget[0].id
    monitoring_notification_channels = var.notification_channels
    schema_version                   = "1.0"
  }
}
