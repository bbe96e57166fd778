# Least privilege. The function's account can change IAM on the watched services
# and nowhere else; its project-level grants are read-only (audit log entries)
# or conditional on its own Firestore database (its memory).
# The invoker account can call the function and nothing else.

resource "google_service_account" "watchdog" {
  project      = var.project_id
  account_id   = var.name
  display_name = "Cloud Run public watchdog (function)"
  description  = "Runs the watchdog: reads and restores the invoker policy of the watched services."
}

resource "google_service_account" "invoker" {
  project      = var.project_id
  account_id   = "${var.name}-invoker"
  display_name = "Cloud Run public watchdog (invoker)"
  description  = "Identity of the audit push subscription and the scheduler tick when they call the function."
}

# --- the watched services -------------------------------------------------

resource "google_project_iam_custom_role" "run_iam" {
  project     = var.project_id
  role_id     = "${replace(var.name, "-", "_")}_run_iam"
  title       = "Public watchdog: Cloud Run IAM"
  description = "Read a Cloud Run service and read/write its IAM policy. Granted per watched service, never on the project."
  permissions = [
    "run.services.get",
    "run.services.getIamPolicy",
    "run.services.setIamPolicy",
  ]
}

resource "google_cloud_run_v2_service_iam_member" "watched" {
  for_each = local.watched

  project  = each.value.project
  location = each.value.location
  name     = each.value.service
  role     = google_project_iam_custom_role.run_iam.id
  member   = "serviceAccount:${google_service_account.watchdog.email}"

  lifecycle {
    precondition {
      # A project custom role can only be granted inside its own project.
      condition     = each.value.project == var.project_id
      error_message = "${each.key} is not in project_id ${var.project_id}; deploy one watchdog per project."
    }
  }
}

# --- audit log entries (who changed it) ---------------------------------------

# logging.logEntries.list cannot be granted below the project (or a log view,
# see README "Known shortcomings"), so a one-permission custom role is the
# narrowest grant that serves the project-scoped entries.list the function
# issues. It is read-only and cannot reach Data Access logs
# (logging.privateLogEntries.list); roles/logging.viewer would also let the
# account read sinks, metrics, buckets and views.
resource "google_project_iam_custom_role" "audit_reader" {
  project     = var.project_id
  role_id     = "${replace(var.name, "-", "_")}_audit_reader"
  title       = "Public watchdog: audit log reader"
  description = "List log entries, to attribute an IAM change found by a tick."
  permissions = ["logging.logEntries.list"]
}

resource "google_project_iam_member" "audit_reader" {
  project = var.project_id
  role    = google_project_iam_custom_role.audit_reader.id
  member  = "serviceAccount:${google_service_account.watchdog.email}"
}

# --- the watchdog's memory (firestore.tf) --------------------------------------

# Firestore permissions are checked on the project, so the grant is made there,
# with an IAM condition that limits it to the watchdog's own database: other
# databases in the project stay out of reach. The role holds what a read and a
# write in a transaction need (begin/rollback, get, create, update): no delete,
# no list or query, no index or database administration (roles/datastore.user
# would add list, delete, indexes and statistics).
resource "google_project_iam_custom_role" "state" {
  project     = var.project_id
  role_id     = "${replace(var.name, "-", "_")}_state"
  title       = "Public watchdog: state records"
  description = "Read and write the watchdog's per-service records in its own Firestore database. Granted with a condition on that database."
  permissions = [
    "datastore.databases.get",
    "datastore.entities.create",
    "datastore.entities.get",
    "datastore.entities.update",
  ]
}

resource "google_project_iam_member" "state" {
  project = var.project_id
  role    = google_project_iam_custom_role.state.id
  member  = "serviceAccount:${google_service_account.watchdog.email}"

  condition {
    title       = "only the watchdog database"
    description = "Limits the grant to the Firestore database ${google_firestore_database.state.name}."
    expression  = "resource.name == \"projects/${var.project_id}/databases/${google_firestore_database.state.name}\""
  }
}

# --- alert channels -----------------------------------------------------------

resource "google_pubsub_topic_iam_member" "alert_publisher" {
  count = local.alert_topic_enabled ? 1 : 0

  topic  = local.alert_topic
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.watchdog.email}"
}

resource "google_secret_manager_secret_iam_member" "webhook" {
  count = var.alert_webhook_secret_id == null ? 0 : 1

  project   = var.project_id
  secret_id = var.alert_webhook_secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.watchdog.email}"
}

# --- who may call the function ------------------------------------------------

resource "google_cloud_run_v2_service_iam_member" "invoker" {
  project  = var.project_id
  location = var.region
  # A gen2 function runs as the Cloud Run service of the same name.
  name   = google_cloudfunctions2_function.watchdog.name
  role   = "roles/run.invoker"
  member = "serviceAccount:${google_service_account.invoker.email}"
}

# Pub/Sub signs the push subscription's OIDC token as the invoker account.
# Projects created before 8 April 2021 need this grant; newer ones have it
# implicitly. It is on this one account, not the project.
resource "google_service_account_iam_member" "pubsub_token_creator" {
  service_account_id = google_service_account.invoker.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${local.pubsub_agent}"
}

locals {
  pubsub_agent = "service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}
