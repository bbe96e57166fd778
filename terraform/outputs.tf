output "function_name" {
  description = "Full resource name of the watchdog function."
  value       = google_cloudfunctions2_function.watchdog.id
}

output "function_uri" {
  description = "run.app URL of the function; reachable only from inside the project (internal ingress) and only with roles/run.invoker."
  value       = google_cloudfunctions2_function.watchdog.service_config[0].uri
}

output "service_account_email" {
  description = "The function's identity (WATCHDOG_SELF_PRINCIPAL): its IAM writes are recognised as the watchdog's own."
  value       = google_service_account.watchdog.email
}

output "invoker_service_account_email" {
  description = "Identity of the push subscription and the scheduler when they call the function."
  value       = google_service_account.invoker.email
}

output "run_iam_role" {
  description = "Custom role granted on each watched service."
  value       = google_project_iam_custom_role.run_iam.id
}

output "audit_topic" {
  description = "Topic the log sink publishes audit entries to."
  value       = google_pubsub_topic.audit.id
}

output "audit_subscription" {
  description = "Push subscription that delivers audit entries to the function."
  value       = google_pubsub_subscription.audit_push.id
}

output "dead_letter_subscription" {
  description = "Pull subscription holding audit events the function never accepted; null when dead_letter_enabled is false."
  value       = var.dead_letter_enabled ? google_pubsub_subscription.dead_letter[0].id : null
}

output "alert_topic" {
  description = "Topic that receives incidents, or null."
  value       = local.alert_topic
}

output "log_sink" {
  description = "Name of the project log sink, and the identity it writes as."
  value = {
    name            = google_logging_project_sink.audit.id
    writer_identity = google_logging_project_sink.audit.writer_identity
    filter          = google_logging_project_sink.audit.filter
  }
}

output "scheduler_job" {
  description = "Full name of the every-minute tick job."
  value       = google_cloud_scheduler_job.tick.id
}

output "heartbeat_metric" {
  description = "Metric type of the heartbeat log-based metric."
  value       = "logging.googleapis.com/user/${google_logging_metric.heartbeat.name}"
}

output "watchdog_environment" {
  description = "The non-secret settings the function runs with; export them to run `python -m watchdog doctor` or `check` against the same services."
  value       = local.environment
}

output "doctor_command" {
  description = "Checks this deployment from the outside with your Application Default Credentials: eval \"$(terraform output -raw doctor_command)\" from the repository root, a few minutes after apply (the first heartbeat comes with the first tick)."
  value = join(" ", compact([
    "WATCHDOG_SERVICES=${join(",", var.watched_services)}",
    "WATCHDOG_SELF_PRINCIPAL=${google_service_account.watchdog.email}",
    local.alert_topic_enabled ? "WATCHDOG_ALERT_TOPIC=${local.alert_topic}" : "",
    ".venv/bin/python -m watchdog doctor --project ${var.project_id} --region ${var.region} --name ${var.name}",
    var.alert_webhook_secret_id == null ? "" : "--secret ${var.alert_webhook_secret_id}",
    "--heartbeat-minutes ${ceil(tonumber(trimsuffix(var.heartbeat_absence, "s")) / 60)}",
  ]))
}

output "state_database" {
  description = "Firestore database holding the watchdog's per-service records (WATCHDOG_FIRESTORE_DATABASE)."
  value       = google_firestore_database.state.name
}
