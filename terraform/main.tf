# The function, its source and the settings it reads. Delivery (audit sink,
# push subscription, scheduler) is in logging.tf and scheduler.tf; every grant
# is in iam.tf; the watchdog's own monitoring is in monitoring.tf.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  # Full names are validated in variables.tf; split them once here.
  watched = {
    for name in var.watched_services : name => {
      project  = split("/", name)[1]
      location = split("/", name)[3]
      service  = split("/", name)[5]
    }
  }

  labels = merge({ component = "run-public-watchdog", managed-by = "terraform" }, var.labels)

  source_archive = coalesce(var.source_archive, "${path.module}/../build/function.zip")
  # A missing zip is reported by the precondition on the object, not by filemd5.
  source_md5 = fileexists(local.source_archive) ? filemd5(local.source_archive) : "missing"

  # Decided from inputs alone: a count cannot wait for the topic's ID.
  alert_topic_enabled = var.create_alert_topic || var.existing_alert_topic != null
  alert_topic         = var.create_alert_topic ? google_pubsub_topic.alerts[0].id : var.existing_alert_topic

  # Names and meanings: watchdog/config.py. A test checks that the code reads
  # every name set here. The webhook URL is a secret: never in this map.
  environment = merge(
    {
      WATCHDOG_SERVICES          = join(",", var.watched_services)
      WATCHDOG_MODE              = var.mode
      WATCHDOG_PUBLIC_MEMBERS    = join(",", var.public_members)
      WATCHDOG_FORBIDDEN_MEMBERS = join(",", var.forbidden_members)
      WATCHDOG_HEALTH_PATH       = var.health_path
      WATCHDOG_ALERT_FORMAT      = var.alert_format
      WATCHDOG_SELF_PRINCIPAL    = google_service_account.watchdog.email
      WATCHDOG_LOG_LEVEL         = var.log_level
      # Memory shared by every instance: a persistent problem pages once, a
      # fight escalates once, recovery is announced (firestore.tf).
      WATCHDOG_STATE              = "firestore"
      WATCHDOG_FIRESTORE_DATABASE = google_firestore_database.state.name
    },
    local.alert_topic_enabled ? { WATCHDOG_ALERT_TOPIC = local.alert_topic } : {},
  )

  apis = toset(concat(
    [
      "artifactregistry.googleapis.com",
      "cloudbuild.googleapis.com",
      "cloudfunctions.googleapis.com",
      "cloudscheduler.googleapis.com",
      "firestore.googleapis.com",
      "iam.googleapis.com",
      "logging.googleapis.com",
      "monitoring.googleapis.com",
      "pubsub.googleapis.com",
      "run.googleapis.com",
      "storage.googleapis.com",
    ],
    var.alert_webhook_secret_id == null ? [] : ["secretmanager.googleapis.com"],
  ))
}

resource "google_project_service" "enabled" {
  for_each = var.enable_apis ? local.apis : toset([])

  project = var.project_id
  service = each.value
  # Other workloads in the project may use these APIs too.
  disable_on_destroy = false
}

resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Holds only build inputs that are public in the repository; access logs add nothing.
  #checkov:skip=CKV_GCP_78:Every upload has a new content-addressed name; versioning would only keep deleted copies.
  name                        = "${var.project_id}-${var.name}-source"
  project                     = var.project_id
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # Only build inputs live here; destroying the module may delete them.
  force_destroy = true
  labels        = local.labels

  lifecycle_rule {
    condition {
      age = 30
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_storage_bucket_object" "source" {
  # The content hash in the name makes every code change a new object, and a
  # new object name is what makes the function redeploy.
  name   = "${var.name}/function-${local.source_md5}.zip"
  bucket = google_storage_bucket.source.name
  source = local.source_archive

  lifecycle {
    precondition {
      condition     = fileexists(local.source_archive)
      error_message = "No function zip at ${local.source_archive}: run `make package` first (or set source_archive)."
    }
  }
}

resource "google_cloudfunctions2_function" "watchdog" {
  name        = var.name
  project     = var.project_id
  location    = var.region
  description = "Keeps ${length(var.watched_services)} Cloud Run service(s) public: restores drifted invoker bindings and alerts."
  labels      = local.labels

  build_config {
    runtime     = "python312"
    entry_point = "on_event" # takes push deliveries and scheduler ticks alike
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    # Scale to zero between events; a cold start fits well inside a minute.
    min_instance_count = 0
    max_instance_count = var.max_instance_count
    # One request per instance: overlapping ticks must not share a process budget.
    max_instance_request_concurrency = 1
    available_memory                 = var.available_memory
    # The push subscription waits ack_deadline_seconds (logging.tf) and the
    # scheduler attempt_deadline (scheduler.tf) for this; keep them aligned.
    timeout_seconds = 60
    # Only Pub/Sub push and Cloud Scheduler in this project reach it, through
    # its run.app URL; IAM (roles/run.invoker for the invoker account) applies
    # on top. Never public: no allUsers binding is made anywhere in this module.
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.watchdog.email
    environment_variables          = local.environment

    dynamic "secret_environment_variables" {
      for_each = var.alert_webhook_secret_id == null ? [] : [var.alert_webhook_secret_id]
      content {
        key        = "WATCHDOG_ALERT_WEBHOOK_URL"
        project_id = var.project_id
        secret     = secret_environment_variables.value
        # Read when an instance starts: a rotated URL reaches new instances only.
        version = "latest"
      }
    }
  }

  lifecycle {
    precondition {
      condition     = !(var.create_alert_topic && var.existing_alert_topic != null)
      error_message = "Set create_alert_topic or existing_alert_topic, not both."
    }
  }

  depends_on = [
    google_project_service.enabled,
    google_secret_manager_secret_iam_member.webhook,
  ]
}

resource "google_pubsub_topic" "alerts" {
  #checkov:skip=CKV_GCP_83:Incidents carry no secret (never the webhook URL); a CMEK is an organisation choice this module does not make.
  count = var.create_alert_topic ? 1 : 0

  name    = "${var.name}-alerts"
  project = var.project_id
  labels  = local.labels

  depends_on = [google_project_service.enabled]
}
