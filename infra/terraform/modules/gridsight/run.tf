# One Cloud Run v2 service per service in infra/events.yaml (`services:`), each running the same
# functions-framework app as the local runtime. Terraform owns configuration; CI owns the image.

resource "google_cloud_run_v2_service" "service" {
  for_each            = local.services
  project             = var.project_id
  location            = var.region
  name                = "${var.prefix}-${each.key}"
  labels              = merge(var.labels, { app = "gridsight", service = each.key })
  deletion_protection = var.deletion_protection
  # Pub/Sub push counts as internal traffic, so push-only services need no public ingress; ingest
  # (Fivetran webhook) and chat (API callers) must be reachable from outside Google Cloud.
  ingress          = contains([local.webhook_service, "chat"], each.key) ? "INGRESS_TRAFFIC_ALL" : "INGRESS_TRAFFIC_INTERNAL_ONLY"
  custom_audiences = [local.push_audience[each.key]]
  # Fivetran cannot present a Google identity, so the webhook service runs with the invoker IAM
  # check switched off (provider >= 6.41 `invoker_iam_disabled`): no `allUsers` binding, which the
  # common domain-restricted-sharing org policy (iam.allowedPolicyMemberDomains) would reject.
  # Every request there is HMAC-verified (webhook) or OIDC-signature-verified (push) in code.
  invoker_iam_disabled = each.key == local.webhook_service

  template {
    service_account = google_service_account.run[each.key].email
    # <= the ack deadline of every subscription pushing here (locals.tf service_timeout_seconds).
    timeout                          = "${local.service_timeout_seconds[each.key]}s"
    max_instance_request_concurrency = each.value.concurrency

    scaling {
      min_instance_count = each.value.min_instances
      max_instance_count = each.value.max_instances
    }

    containers {
      image = var.bootstrap_image

      ports {
        container_port = 8080
      }

      resources {
        cpu_idle = true
        limits = {
          cpu    = each.value.cpu
          memory = each.value.memory
        }
      }

      # Common settings, then this service's own (null = unset: the code's default applies).
      dynamic "env" {
        for_each = {
          for name, value in merge(local.common_env, each.value.env, {
            GRIDSIGHT_PUSH_AUDIENCE        = local.push_audience[each.key]
            GRIDSIGHT_PUSH_AUTH            = local.push_auth[each.key]
            GRIDSIGHT_PUSH_SERVICE_ACCOUNT = google_service_account.push.email
          }) : name => value if value != null
        }
        content {
          name  = env.key
          value = env.value
        }
      }

      # Secrets by reference: the value never appears in Terraform state or the revision spec.
      dynamic "env" {
        for_each = each.value.secrets
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = google_secret_manager_secret.secret[env.value].secret_id
              version = "latest"
            }
          }
        }
      }
    }
  }

  lifecycle {
    # cloudbuild.yaml rolls out each new image; `apply` must not roll it back to bootstrap_image.
    ignore_changes = [
      client,
      client_version,
      template[0].containers[0].image,
    ]

    # A delivery cut by the request timeout is redelivered and sent again (locals.tf alert_worst_case_seconds).
    precondition {
      condition     = each.key != "anomaly" || local.alert_worst_case_seconds + 30 <= local.service_timeout_seconds[each.key]
      error_message = "anomaly_alerts: attempts x timeout_s + backoff (+ 12 x timeout_s with smtp_host) must leave 30 s of the anomaly service's request timeout (the shortest ack deadline of its subscriptions, infra/events.yaml); lower attempts or timeout_s."
    }
  }

  # `latest` must resolve when the revision is created: secrets.tf gives every secret a
  # placeholder version first (the services refuse to work with it until a real one is added).
  depends_on = [
    google_project_service.api,
    google_secret_manager_secret_iam_member.runtime,
    google_secret_manager_secret_version.placeholder,
  ]
}
