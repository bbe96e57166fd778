# Plan-only tests against a mocked google provider: nothing is created.
# The provider schema comes from the schema-only stub (tools/tf_stub_provider.py)
# that tests/test_terraform.py installs through a filesystem mirror.

mock_provider "google" {
  # Mocked computed values already at plan (Terraform 1.11+): no run applies.
  override_during = plan

  mock_data "google_project" {
    defaults = {
      number = "123456789012"
    }
  }

  mock_data "google_cloud_run_v2_service" {
    defaults = {
      uri = "https://hello-abcdefghij-ew.a.run.app"
    }
  }
}

# Known identities at plan time, so conditions can compare them.
override_resource {
  override_during = plan
  target          = google_service_account.watchdog
  values = {
    email = "public-watchdog@example-project.iam.gserviceaccount.com"
  }
}

override_resource {
  override_during = plan
  target          = google_service_account.invoker
  values = {
    email = "public-watchdog-invoker@example-project.iam.gserviceaccount.com"
  }
}

override_resource {
  override_during = plan
  target          = google_pubsub_topic.alerts
  values = {
    id = "projects/example-project/topics/public-watchdog-alerts"
  }
}

variables {
  project_id       = "example-project"
  region           = "europe-west1"
  watched_services = ["projects/example-project/locations/europe-west1/services/hello"]
  # Any existing file will do: a plan only needs its hash.
  source_archive = "./versions.tf"
}

run "function_is_private_and_scales_to_zero" {
  command = plan

  assert {
    condition     = google_cloudfunctions2_function.watchdog.service_config[0].ingress_settings == "ALLOW_INTERNAL_ONLY"
    error_message = "The function must accept internal traffic only."
  }

  assert {
    condition     = google_cloudfunctions2_function.watchdog.service_config[0].min_instance_count == 0
    error_message = "The function must scale to zero."
  }

  assert {
    condition     = google_cloud_run_v2_service_iam_member.invoker.member == "serviceAccount:${google_service_account.invoker.email}"
    error_message = "Only the invoker account may invoke the function."
  }
}

run "settings_reach_the_function" {
  command = plan

  assert {
    condition     = google_cloudfunctions2_function.watchdog.service_config[0].environment_variables["WATCHDOG_SERVICES"] == "projects/example-project/locations/europe-west1/services/hello"
    error_message = "WATCHDOG_SERVICES must list the watched services."
  }

  assert {
    condition     = google_cloudfunctions2_function.watchdog.service_config[0].environment_variables["WATCHDOG_SELF_PRINCIPAL"] == google_service_account.watchdog.email
    error_message = "WATCHDOG_SELF_PRINCIPAL must be the function's own account."
  }

  assert {
    condition     = !contains(keys(google_cloudfunctions2_function.watchdog.service_config[0].environment_variables), "WATCHDOG_ALERT_WEBHOOK_URL")
    error_message = "The webhook URL must never be a plain environment variable."
  }

  assert {
    condition     = length(google_cloudfunctions2_function.watchdog.service_config[0].secret_environment_variables) == 0
    error_message = "No webhook secret is mounted unless one is named."
  }
}

run "grants_follow_the_watched_services" {
  command = plan

  variables {
    watched_services = [
      "projects/example-project/locations/europe-west1/services/hello",
      "projects/example-project/locations/us-central1/services/shop",
    ]
  }

  assert {
    condition     = length(google_cloud_run_v2_service_iam_member.watched) == 2
    error_message = "One grant per watched service."
  }

  assert {
    condition     = google_cloud_run_v2_service_iam_member.watched["projects/example-project/locations/us-central1/services/shop"].location == "us-central1"
    error_message = "Each grant is on the service's own location."
  }

  assert {
    condition     = google_cloud_scheduler_job.tick.schedule == "* * * * *"
    error_message = "The tick runs every minute."
  }
}

run "webhook_comes_from_secret_manager" {
  command = plan

  variables {
    alert_webhook_secret_id = "public-watchdog-webhook"
    alert_format            = "slack"
  }

  assert {
    condition     = google_cloudfunctions2_function.watchdog.service_config[0].secret_environment_variables[0].key == "WATCHDOG_ALERT_WEBHOOK_URL"
    error_message = "The webhook URL is a secret environment variable."
  }

  assert {
    condition     = google_secret_manager_secret_iam_member.webhook[0].secret_id == "public-watchdog-webhook"
    error_message = "Secret access is granted on that secret only."
  }
}

run "alert_topic_is_created_and_granted" {
  command = plan

  variables {
    create_alert_topic = true
  }

  assert {
    condition     = google_cloudfunctions2_function.watchdog.service_config[0].environment_variables["WATCHDOG_ALERT_TOPIC"] == google_pubsub_topic.alerts[0].id
    error_message = "WATCHDOG_ALERT_TOPIC names the created topic."
  }

  assert {
    condition     = google_pubsub_topic_iam_member.alert_publisher[0].topic == google_pubsub_topic.alerts[0].id
    error_message = "The function may publish to the alert topic only."
  }
}

run "dead_letter_topic_is_optional" {
  command = plan

  variables {
    dead_letter_enabled = false
  }

  assert {
    condition     = length(google_pubsub_topic.dead_letter) == 0 && length(google_pubsub_subscription.audit_push.dead_letter_policy) == 0
    error_message = "No dead-letter topic or policy when disabled."
  }
}

run "uptime_checks_and_apis_are_optional" {
  command = plan

  variables {
    uptime_checks_enabled = false
    enable_apis           = false
  }

  assert {
    condition     = length(google_monitoring_uptime_check_config.watched) == 0 && length(google_monitoring_alert_policy.uptime) == 0
    error_message = "No uptime checks when disabled."
  }

  assert {
    condition     = length(google_project_service.enabled) == 0
    error_message = "No API is enabled when enable_apis is false."
  }
}

run "rejects_a_service_that_is_not_a_full_name" {
  command = plan

  variables {
    watched_services = ["hello"]
  }

  expect_failures = [var.watched_services]
}

run "rejects_an_unknown_mode" {
  command = plan

  variables {
    mode = "fix"
  }

  expect_failures = [var.mode]
}

run "rejects_a_schedule_that_is_not_cron" {
  command = plan

  variables {
    tick_schedule = "every minute"
  }

  expect_failures = [var.tick_schedule]
}

run "rejects_a_webhook_url_in_place_of_a_secret_id" {
  command = plan

  variables {
    alert_webhook_secret_id = "https://hooks.example.com/services/T000/B000/XXXX"
  }

  expect_failures = [var.alert_webhook_secret_id]
}

run "rejects_a_service_in_another_project" {
  command = plan

  variables {
    watched_services = ["projects/other-project/locations/europe-west1/services/hello"]
  }

  expect_failures = [google_cloud_run_v2_service_iam_member.watched]
}

run "rejects_two_alert_topics" {
  command = plan

  variables {
    create_alert_topic   = true
    existing_alert_topic = "projects/example-project/topics/incidents"
  }

  expect_failures = [google_cloudfunctions2_function.watchdog]
}

run "memory_is_the_watchdogs_own_firestore_database" {
  command = plan

  assert {
    condition     = google_cloudfunctions2_function.watchdog.service_config[0].environment_variables["WATCHDOG_STATE"] == "firestore"
    error_message = "The function must keep its memory in Firestore."
  }

  assert {
    condition     = google_cloudfunctions2_function.watchdog.service_config[0].environment_variables["WATCHDOG_FIRESTORE_DATABASE"] == "public-watchdog"
    error_message = "WATCHDOG_FIRESTORE_DATABASE must name the module's database."
  }

  assert {
    condition     = google_project_iam_member.state.condition[0].expression == "resource.name == \"projects/example-project/databases/public-watchdog\""
    error_message = "The state grant must be limited to the watchdog's own database."
  }
}
