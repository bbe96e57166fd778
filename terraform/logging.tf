# Audit delivery: Admin Activity entries for the watched methods go from a
# project sink to the audit topic, and from there to the function through a
# push subscription this module owns (README: "How events reach the function").

locals {
  # The methods must be exactly watchdog.methods.WATCHED_METHODS; a test parses
  # this text and compares. Newlines between terms are plain whitespace here.
  audit_log_filter = <<-EOT
    logName="projects/${var.project_id}/logs/cloudaudit.googleapis.com%2Factivity"
    AND protoPayload.serviceName="run.googleapis.com"
    AND protoPayload.methodName=(
      "google.cloud.run.v1.Services.SetIamPolicy" OR
      "google.cloud.run.v2.Services.SetIamPolicy" OR
      "google.cloud.run.v1.Services.CreateService" OR
      "google.cloud.run.v1.Services.ReplaceService" OR
      "google.cloud.run.v1.Services.DeleteService" OR
      "google.cloud.run.v2.Services.CreateService" OR
      "google.cloud.run.v2.Services.UpdateService" OR
      "google.cloud.run.v2.Services.DeleteService"
    )
  EOT
}

resource "google_pubsub_topic" "audit" {
  #checkov:skip=CKV_GCP_83:Holds Admin Activity entries Cloud Logging already stores with Google-managed keys; a CMEK is an organisation choice this module does not make.
  name    = "${var.name}-audit"
  project = var.project_id
  labels  = local.labels

  depends_on = [google_project_service.enabled]
}

resource "google_logging_project_sink" "audit" {
  name        = "${var.name}-audit"
  project     = var.project_id
  description = "Cloud Run IAM and service changes, for the public watchdog."
  destination = "pubsub.googleapis.com/${google_pubsub_topic.audit.id}"
  filter      = trimspace(local.audit_log_filter)
  # Its own writer identity, so the publisher grant below is for this sink only.
  unique_writer_identity = true
}

# Without this grant the sink drops every entry silently (no error anywhere).
resource "google_pubsub_topic_iam_member" "sink_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.audit.name
  role    = "roles/pubsub.publisher"
  member  = google_logging_project_sink.audit.writer_identity
}

resource "google_pubsub_subscription" "audit_push" {
  name    = "${var.name}-audit-push"
  project = var.project_id
  topic   = google_pubsub_topic.audit.id
  labels  = local.labels

  # Push waits this long for the function (timeout_seconds = 60 in main.tf).
  ack_deadline_seconds = 90
  # An audit event only makes the function check one service at once; the
  # minute tick checks every service anyway, so an hour of backlog is plenty.
  message_retention_duration = "3600s"

  expiration_policy {
    ttl = "" # never expire, however quiet the services are
  }

  # The function answers 2xx for anything a retry cannot fix and an error only
  # for transient failures (API unavailable, etag conflicts exhausted), so a
  # redelivery with backoff is the right reaction to every non-2xx.
  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "300s"
  }

  push_config {
    # The run.app URL: internal-only ingress admits Pub/Sub there, not at a custom domain.
    push_endpoint = google_cloudfunctions2_function.watchdog.service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.invoker.email
      audience              = google_cloudfunctions2_function.watchdog.service_config[0].uri
    }
  }

  dynamic "dead_letter_policy" {
    for_each = var.dead_letter_enabled ? [google_pubsub_topic.dead_letter[0].id] : []
    content {
      dead_letter_topic     = dead_letter_policy.value
      max_delivery_attempts = var.max_delivery_attempts
    }
  }

  depends_on = [
    google_cloud_run_v2_service_iam_member.invoker,
    google_service_account_iam_member.pubsub_token_creator,
  ]
}

# --- dead letters ---------------------------------------------------------------

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Same content as the audit topic; see there.
  count = var.dead_letter_enabled ? 1 : 0

  name    = "${var.name}-audit-dead-letter"
  project = var.project_id
  labels  = local.labels

  depends_on = [google_project_service.enabled]
}

# A topic keeps nothing by itself: this subscription holds dead letters for a
# week so someone can read why they failed (gcloud pubsub subscriptions pull).
resource "google_pubsub_subscription" "dead_letter" {
  count = var.dead_letter_enabled ? 1 : 0

  name                       = "${var.name}-audit-dead-letter"
  project                    = var.project_id
  topic                      = google_pubsub_topic.dead_letter[0].id
  labels                     = local.labels
  message_retention_duration = "604800s"
  ack_deadline_seconds       = 60

  expiration_policy {
    ttl = ""
  }
}

# Pub/Sub itself forwards dead letters: its service agent needs to publish to
# the dead-letter topic and to acknowledge on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  count = var.dead_letter_enabled ? 1 : 0

  project = var.project_id
  topic   = google_pubsub_topic.dead_letter[0].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${local.pubsub_agent}"
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  count = var.dead_letter_enabled ? 1 : 0

  project      = var.project_id
  subscription = google_pubsub_subscription.audit_push.name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${local.pubsub_agent}"
}
