# Inputs. Every setting the function reads (WATCHDOG_*) has one variable here;
# main.tf maps them. Cross-variable rules live in preconditions (main.tf, iam.tf)
# so that Terraform 1.5 to 1.8 can still run this module.

variable "project_id" {
  description = "Project that hosts the watchdog and the watched Cloud Run services."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project ID (6-30 lowercase letters, digits or hyphens), not a project number or name."
  }
}

variable "region" {
  description = "Region of the function, its scheduler job and its source bucket, e.g. europe-west1."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must look like europe-west1 or us-central1."
  }
}

variable "watched_services" {
  description = "Cloud Run services to keep public, by full name: projects/PROJECT/locations/REGION/services/NAME. They must be in project_id (the custom role and the log sink are per project)."
  type        = list(string)

  validation {
    condition     = length(var.watched_services) > 0
    error_message = "watched_services must name at least one service."
  }

  validation {
    condition = alltrue([
      for name in var.watched_services :
      can(regex("^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/locations/[a-z]+-[a-z]+[0-9]+/services/[a-z]([-a-z0-9]{0,47}[a-z0-9])?$", name))
    ])
    error_message = "Each watched service must be projects/PROJECT_ID/locations/REGION/services/NAME, e.g. projects/my-project/locations/europe-west1/services/my-app."
  }

  validation {
    condition     = length(distinct(var.watched_services)) == length(var.watched_services)
    error_message = "watched_services lists a service twice."
  }
}

variable "name" {
  description = "Name of the function; also the prefix of its service accounts, topics, sink, job, metric and roles."
  type        = string
  default     = "public-watchdog"

  validation {
    # 6-22 characters keeps "<name>-invoker" within the 30-character service account limit.
    condition     = can(regex("^[a-z][a-z0-9-]{4,20}[a-z0-9]$", var.name))
    error_message = "name must be 6-22 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "mode" {
  description = "enforce restores the public binding; report only detects, attributes and alerts (WATCHDOG_MODE)."
  type        = string
  default     = "enforce"

  validation {
    condition     = contains(["enforce", "report"], var.mode)
    error_message = "mode must be enforce or report."
  }
}

variable "public_members" {
  description = "Members that must hold roles/run.invoker unconditionally (WATCHDOG_PUBLIC_MEMBERS)."
  type        = list(string)
  default     = ["allUsers"]

  validation {
    condition = length(var.public_members) > 0 && alltrue([
      for member in var.public_members :
      can(regex("^(allUsers|allAuthenticatedUsers|[a-zA-Z]+:.+)$", member))
    ])
    error_message = "public_members needs at least one IAM member: allUsers, allAuthenticatedUsers or TYPE:ID."
  }
}

variable "forbidden_members" {
  description = "Members that must hold no roles/run.invoker binding (WATCHDOG_FORBIDDEN_MEMBERS)."
  type        = list(string)
  default     = ["allAuthenticatedUsers"]

  validation {
    condition = alltrue([
      for member in var.forbidden_members :
      can(regex("^(allUsers|allAuthenticatedUsers|[a-zA-Z]+:.+)$", member))
    ])
    error_message = "forbidden_members must be IAM members: allUsers, allAuthenticatedUsers or TYPE:ID."
  }
}

variable "health_path" {
  description = "Path probed on each watched service after a check (WATCHDOG_HEALTH_PATH); also used by the uptime checks."
  type        = string
  default     = "/health"

  validation {
    condition     = can(regex("^/[^\\s?#]*$", var.health_path))
    error_message = "health_path must start with / and hold no spaces, query or fragment."
  }
}

variable "alert_format" {
  description = "Rendering for the webhook: slack, chat (Google Chat) or json (WATCHDOG_ALERT_FORMAT)."
  type        = string
  default     = "json"

  validation {
    condition     = contains(["slack", "chat", "json"], var.alert_format)
    error_message = "alert_format must be slack, chat or json."
  }
}

variable "alert_webhook_secret_id" {
  description = "ID of an existing Secret Manager secret in project_id whose latest version is the alert webhook URL (WATCHDOG_ALERT_WEBHOOK_URL). Create it and its version out of band so the URL never enters Terraform state; null sends no webhook alerts."
  type        = string
  default     = null

  validation {
    condition     = var.alert_webhook_secret_id == null || can(regex("^[a-zA-Z0-9_-]{1,255}$", var.alert_webhook_secret_id))
    error_message = "alert_webhook_secret_id must be a secret ID (letters, digits, - and _), not a URL or a full resource name."
  }
}

variable "create_alert_topic" {
  description = "Create a Pub/Sub topic <name>-alerts that receives every incident (WATCHDOG_ALERT_TOPIC)."
  type        = bool
  default     = false
}

variable "existing_alert_topic" {
  description = "Full name projects/P/topics/T of an existing topic to receive incidents instead; the function gets publisher on it and nothing else. Leave null when create_alert_topic is true."
  type        = string
  default     = null

  validation {
    condition     = var.existing_alert_topic == null || can(regex("^projects/[^/]+/topics/[^/]+$", var.existing_alert_topic))
    error_message = "existing_alert_topic must be projects/PROJECT/topics/TOPIC."
  }
}

variable "log_level" {
  description = "Lowest level the function logs (WATCHDOG_LOG_LEVEL)."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "tick_schedule" {
  description = "Cron schedule of the level-triggered check of every watched service. Keep it every minute: it bounds how long drift can last when an audit event is lost."
  type        = string
  default     = "* * * * *"

  validation {
    condition     = can(regex("^(\\S+\\s+){4}\\S+$", trimspace(var.tick_schedule)))
    error_message = "tick_schedule must be a five-field cron expression such as \"* * * * *\"."
  }
}

variable "source_archive" {
  description = "Path of the function zip built by `make package`; null means build/function.zip at the repository root."
  type        = string
  default     = null
}

variable "available_memory" {
  description = "Memory of each function instance."
  type        = string
  default     = "512Mi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.available_memory))
    error_message = "available_memory must be like 256Mi, 512Mi or 1Gi."
  }
}

variable "max_instance_count" {
  description = "Upper bound on concurrent function instances; a burst of audit events never needs many."
  type        = number
  default     = 5

  validation {
    condition     = var.max_instance_count >= 1 && var.max_instance_count <= 100 && floor(var.max_instance_count) == var.max_instance_count
    error_message = "max_instance_count must be a whole number from 1 to 100."
  }
}

variable "dead_letter_enabled" {
  description = "Send audit events that still fail after max_delivery_attempts to a dead-letter topic (<name>-audit-dead-letter), kept 7 days in a pull subscription for inspection."
  type        = bool
  default     = true
}

variable "max_delivery_attempts" {
  description = "Deliveries of one audit event before it goes to the dead-letter topic (Pub/Sub allows 5-100)."
  type        = number
  default     = 10

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts must be from 5 to 100."
  }
}

variable "uptime_checks_enabled" {
  description = "Create a Cloud Monitoring uptime check on health_path of each watched service (the deployer must be able to read the services), with an alert policy when one fails."
  type        = bool
  default     = true
}

variable "heartbeat_absence" {
  description = "How long without a heartbeat log record (one per tick) before the dead man's switch alert fires, in seconds with an s suffix."
  type        = string
  default     = "600s"

  validation {
    condition = can(regex("^[0-9]+s$", var.heartbeat_absence)) && try(
      tonumber(trimsuffix(var.heartbeat_absence, "s")) >= 180 &&
      tonumber(trimsuffix(var.heartbeat_absence, "s")) <= 86400,
      false
    )
    error_message = "heartbeat_absence must be between 180s and 86400s, e.g. 600s."
  }
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channel IDs (projects/P/notificationChannels/N) for the heartbeat and uptime alert policies."
  type        = list(string)
  default     = []

  validation {
    condition = alltrue([
      for channel in var.notification_channels :
      can(regex("^projects/[^/]+/notificationChannels/[0-9]+$", channel))
    ])
    error_message = "notification_channels must be full names projects/PROJECT/notificationChannels/ID."
  }
}

variable "enable_apis" {
  description = "Enable the APIs the watchdog needs (never disabled on destroy). Set false when a platform team enables APIs."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Labels added to every resource that takes them."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([
      for key, value in var.labels :
      can(regex("^[a-z][a-z0-9_-]{0,62}$", key)) && can(regex("^[a-z0-9_-]{0,63}$", value))
    ])
    error_message = "Label keys must start with a lowercase letter; keys and values hold at most 63 lowercase letters, digits, _ or -."
  }
}
