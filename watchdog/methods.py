"""The Cloud Run audit-log methods that can take the public invoker binding away.

This list is the single source of truth: the trigger decoder accepts these methods,
the audit-log gateway queries for them, and the Terraform log-sink filter is tested
to name exactly these.
"""

SERVICE_NAME = "run.googleapis.com"

# SetIamPolicy changes the policy directly.
IAM_METHODS: tuple[str, ...] = (
    "google.cloud.run.v1.Services.SetIamPolicy",
    "google.cloud.run.v2.Services.SetIamPolicy",
)

# These replace or re-create the service: they can re-enable the invoker IAM check
# (invoker_iam_disabled) or bring a service back with an empty policy.
SERVICE_METHODS: tuple[str, ...] = (
    "google.cloud.run.v1.Services.CreateService",
    "google.cloud.run.v1.Services.ReplaceService",
    "google.cloud.run.v1.Services.DeleteService",
    "google.cloud.run.v2.Services.CreateService",
    "google.cloud.run.v2.Services.UpdateService",
    "google.cloud.run.v2.Services.DeleteService",
)

WATCHED_METHODS: tuple[str, ...] = IAM_METHODS + SERVICE_METHODS

ACTIVITY_LOG_ID = "cloudaudit.googleapis.com%2Factivity"
