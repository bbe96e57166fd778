# The smallest real deployment: one watched service, Slack alerts through a
# webhook URL kept in Secret Manager, heartbeat alerts to an existing channel.
#
#   make package            # from the repository root: builds build/function.zip
#   printf %s "$SLACK_WEBHOOK_URL" | gcloud secrets create public-watchdog-webhook \
#     --project my-project --replication-policy automatic --data-file=-
#   cd terraform/examples/basic
#   terraform init && terraform apply -var project_id=my-project

terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.50.0, < 9.0.0"
    }
  }
}

variable "project_id" {
  description = "Project of the watchdog and the watched service."
  type        = string
}

variable "region" {
  description = "Region of the watched service and of the watchdog."
  type        = string
  default     = "europe-west1"
}

provider "google" {
  project = var.project_id
  region  = var.region
}

module "watchdog" {
  source = "../.."

  project_id = var.project_id
  region     = var.region
  watched_services = [
    "projects/${var.project_id}/locations/${var.region}/services/hello",
  ]

  alert_format            = "slack"
  alert_webhook_secret_id = "public-watchdog-webhook"
  create_alert_topic      = true
  notification_channels   = []
}

output "function_uri" {
  description = "Internal URL of the watchdog function."
  value       = module.watchdog.function_uri
}

output "watchdog_environment" {
  description = "Settings to export before `python -m watchdog doctor`."
  value       = module.watchdog.watchdog_environment
}
