# The level-triggered tick: every minute the function checks every watched
# service, whatever happened to the audit feed.

resource "google_cloud_scheduler_job" "tick" {
  name        = "${var.name}-tick"
  project     = var.project_id
  region      = var.region
  description = "Checks every watched service once, as the fallback for lost or late audit events."
  schedule    = var.tick_schedule
  time_zone   = "Etc/UTC"
  # Matches the function's timeout_seconds (main.tf).
  attempt_deadline = "60s"

  # A missed tick is replaced by the next one a minute later; retrying it
  # would only stack up overlapping checks.
  retry_config {
    retry_count = 0
  }

  # An HTTP target straight to the function: an empty POST with the
  # Google-Cloud-Scheduler user agent, which the entry point reads as a tick.
  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.watchdog.service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.invoker.email
      audience              = google_cloudfunctions2_function.watchdog.service_config[0].uri
    }
  }

  depends_on = [
    google_project_service.enabled,
    google_cloud_run_v2_service_iam_member.invoker,
  ]
}
