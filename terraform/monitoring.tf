# The watchdog's own health: a heartbeat metric with a dead man's switch, and
# optional uptime checks on what it protects.

# One record per tick: jsonPayload.heartbeat = true, "tick checked N services".
resource "google_logging_metric" "heartbeat" {
  project     = var.project_id
  name        = "${var.name}-heartbeat"
  description = "Ticks completed by the public watchdog (one heartbeat record each)."
  filter      = <<-EOT
    resource.type="cloud_run_revision"
    AND resource.labels.service_name="${google_cloudfunctions2_function.watchdog.name}"
    AND jsonPayload.heartbeat=true
  EOT

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "Public watchdog heartbeats"
  }
}

resource "google_monitoring_alert_policy" "heartbeat" {
  project      = var.project_id
  display_name = "${var.name}: heartbeat missing"
  combiner     = "OR"
  severity     = "CRITICAL"
  user_labels  = local.labels

  conditions {
    display_name = "No heartbeat for ${var.heartbeat_absence}"

    condition_absent {
      filter   = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.heartbeat.name}\" AND resource.type=\"cloud_run_revision\""
      duration = var.heartbeat_absence

      # Summing across every series makes one series per function, so a
      # redeploy (a new revision, hence a new series) does not look like
      # silence, and silence after it still does.
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      The public watchdog `${var.name}` has logged no tick for ${var.heartbeat_absence}:
      nothing is checking that the watched Cloud Run services stay public.
      Check, in order: the scheduler job `${google_cloud_scheduler_job.tick.name}` is enabled
      and its last run succeeded; the function `${var.name}` deployed and its logs show
      no start-up error (a bad WATCHDOG_* setting stops it at cold start);
      `python -m watchdog doctor` from a machine with access to the project.
    EOT
  }

  alert_strategy {
    auto_close = "1800s"
  }

  notification_channels = var.notification_channels
}

# --- uptime of the watched services (optional) ------------------------------------

data "google_cloud_run_v2_service" "watched" {
  for_each = var.uptime_checks_enabled ? local.watched : {}

  project  = each.value.project
  location = each.value.location
  name     = each.value.service
}

resource "google_monitoring_uptime_check_config" "watched" {
  for_each = data.google_cloud_run_v2_service.watched

  project      = var.project_id
  display_name = "${var.name}: ${each.value.name} ${var.health_path}"
  timeout      = "10s"
  period       = "60s"
  user_labels  = local.labels

  http_check {
    path         = var.health_path
    port         = 443
    use_ssl      = true
    validate_ssl = true

    accepted_response_status_codes {
      status_class = "STATUS_CLASS_2XX"
    }
  }

  monitored_resource {
    type = "uptime_url"
    labels = {
      project_id = each.value.project
      host       = trimprefix(each.value.uri, "https://")
    }
  }
}

resource "google_monitoring_alert_policy" "uptime" {
  for_each = google_monitoring_uptime_check_config.watched

  project      = var.project_id
  display_name = "${var.name}: ${data.google_cloud_run_v2_service.watched[each.key].name} not answering ${var.health_path}"
  combiner     = "OR"
  severity     = "ERROR"
  user_labels  = local.labels

  conditions {
    display_name = "Uptime check failing from more than one region"

    condition_threshold {
      filter          = "metric.type=\"monitoring.googleapis.com/uptime_check/check_passed\" AND resource.type=\"uptime_url\" AND metric.label.\"check_id\"=\"${each.value.uptime_check_id}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 1
      duration        = "120s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_NEXT_OLDER"
        cross_series_reducer = "REDUCE_COUNT_FALSE"
        group_by_fields      = ["resource.label.*"]
      }

      trigger {
        count = 1
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = <<-EOT
      `${var.health_path}` on ${each.key} fails from several regions. If the watchdog
      restored its public binding in the last minutes, IAM may still be propagating
      (typically about 2 minutes, sometimes 7 or more); otherwise read the watchdog's
      latest incident in Cloud Logging.
    EOT
  }

  notification_channels = var.notification_channels
}
