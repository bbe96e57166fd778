"""The deployment's own resources, on loopback, for `python -m watchdog doctor`.

`DeploymentSandbox` is the sandbox plus what `terraform/` creates around the
function, seeded healthy: the function's Cloud Run service (internal ingress, only
the invoker account may call it), the custom role on each watched service, the audit
topic with the sink's publisher grant, the push subscription and its dead-letter
topic, the log sink, the every-minute scheduler job, the webhook secret with one
enabled version, and a heartbeat record a minute old. Each `revoke_*`, `delete_*`,
`pause_*`, `make_*` or `stop_*` method breaks one piece, so a test can check that the
doctor notices.

The admin APIs (Pub/Sub Publisher.GetTopic, Subscriber.GetSubscription,
IAMPolicy.GetIamPolicy on topics, Logging ConfigServiceV2.GetSink, Cloud Scheduler
GetJob, Secret Manager GetSecret and GetSecretVersion) share one gRPC server: only
the doctor reads them, and one endpoint keeps its settings short. The real client
libraries talk to it unchanged. Secret payloads are stored but no call returns them
(there is no AccessSecretVersion), as the doctor must never need them.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google import pubsub_v1
from google.cloud import run_v2, scheduler_v1, secretmanager_v1
from google.cloud.logging_v2.types import GetSinkRequest, LogSink
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.protobuf import json_format

from watchdog import methods
from watchdog.model import INVOKER_ROLE
from watchdog.sandbox.faults import abort
from watchdog.sandbox.logging_service import LogEntryPb
from watchdog.sandbox.server import DEFAULT_SERVICES, Sandbox, _GrpcServer

DEFAULT_NAME = "public-watchdog"
DEFAULT_SECRET_ID = "public-watchdog-webhook"  # noqa: S105 (an ID, not a value)
PROJECT_NUMBER = "123456789012"
PUBLISHER_ROLE = "roles/pubsub.publisher"
DELETED_TOPIC = "_deleted-topic_"  # what Pub/Sub shows once a topic is deleted

# What each stand-in method needs, for the PERMISSION_DENIED a test can arm.
PERMISSIONS = {
    "GetTopic": "pubsub.topics.get",
    "GetIamPolicy": "pubsub.topics.getIamPolicy",
    "GetSubscription": "pubsub.subscriptions.get",
    "GetSink": "logging.sinks.get",
    "GetJob": "cloudscheduler.jobs.get",
    "GetSecret": "secretmanager.secrets.get",
    "GetSecretVersion": "secretmanager.versions.get",
}


class _AnyOf(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Serves a call with the first of several generic handlers that knows it."""

    def __init__(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self._handlers = tuple(handlers)

    def service(self, handler_call_details: Any) -> Any:
        for handler in self._handlers:
            if (method := handler.service(handler_call_details)) is not None:
                return method
        return None


def _unary(
    function: Callable[[Any, grpc.ServicerContext], Any],
    request_type: Any,
    response_type: Any,
) -> Any:
    """A unary handler for proto-plus request and response types."""
    return grpc.unary_unary_rpc_method_handler(
        function,
        request_deserializer=request_type.deserialize,
        response_serializer=response_type.serialize,
    )


class DeploymentApis:
    """The deployment's resources and the gRPC handlers over them; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # held by whoever changes the stores below
        self.topics: dict[str, Any] = {}  # name -> pubsub_v1.Topic
        self.topic_policies: dict[str, Any] = {}  # name -> google.iam.v1.Policy
        self.subscriptions: dict[str, Any] = {}
        self.sinks: dict[str, Any] = {}
        self.jobs: dict[str, Any] = {}
        self.secrets: dict[str, Any] = {}
        # secret name -> [(version, payload)], oldest first; payloads never served
        self.versions: dict[str, list[tuple[Any, bytes]]] = {}
        self._denied: set[str] = set()

    def clear(self) -> None:
        with self.lock:
            for store in (
                self.topics,
                self.topic_policies,
                self.subscriptions,
                self.sinks,
                self.jobs,
                self.secrets,
                self.versions,
            ):
                store.clear()
            self._denied.clear()

    def deny(self, method: str) -> None:
        """Refuse every later call of `method` (e.g. "GetSink") as PERMISSION_DENIED."""
        if method not in PERMISSIONS:
            raise ValueError(
                f"{method!r} is not a deployment stand-in method; expected one of "
                f"{', '.join(PERMISSIONS)}"
            )
        with self.lock:
            self._denied.add(method)

    def add_topic(self, name: str, publishers: Sequence[str] = ()) -> None:
        policy = policy_pb2.Policy(version=1, etag=b"\x07sandbox")
        if publishers:
            policy.bindings.add(role=PUBLISHER_ROLE, members=publishers)
        with self.lock:
            self.topics[name] = pubsub_v1.Topic(name=name)
            self.topic_policies[name] = policy

    def delete_topic(self, name: str) -> None:
        """Delete a topic; its subscriptions stay, pointing nowhere, as in Pub/Sub."""
        with self.lock:
            self.topics.pop(name, None)
            self.topic_policies.pop(name, None)
            for subscription in self.subscriptions.values():
                if subscription.topic == name:
                    subscription.topic = DELETED_TOPIC

    def remove_publisher(self, topic: str, member: str) -> None:
        with self.lock:
            for binding in self.topic_policies[topic].bindings:
                if binding.role == PUBLISHER_ROLE and member in binding.members:
                    binding.members.remove(member)

    def add_secret_version(self, secret: str, payload: bytes) -> None:
        with self.lock:
            versions = self.versions.setdefault(secret, [])
            version = secretmanager_v1.SecretVersion(
                name=f"{secret}/versions/{len(versions) + 1}",
                state=secretmanager_v1.SecretVersion.State.ENABLED,
            )
            versions.append((version, payload))

    def disable_latest_version(self, secret: str) -> None:
        with self.lock:
            version, _ = self.versions[secret][-1]
            version.state = secretmanager_v1.SecretVersion.State.DISABLED

    # The gRPC side.

    def handler(self) -> grpc.GenericRpcHandler:
        return _AnyOf(
            [
                grpc.method_handlers_generic_handler(
                    "google.pubsub.v1.Publisher",
                    {
                        "GetTopic": _unary(
                            self.get_topic, pubsub_v1.GetTopicRequest, pubsub_v1.Topic
                        )
                    },
                ),
                grpc.method_handlers_generic_handler(
                    "google.pubsub.v1.Subscriber",
                    {
                        "GetSubscription": _unary(
                            self.get_subscription,
                            pubsub_v1.GetSubscriptionRequest,
                            pubsub_v1.Subscription,
                        )
                    },
                ),
                grpc.method_handlers_generic_handler(
                    "google.iam.v1.IAMPolicy",
                    {
                        "GetIamPolicy": grpc.unary_unary_rpc_method_handler(
                            self.get_iam_policy,
                            request_deserializer=(
                                iam_policy_pb2.GetIamPolicyRequest.FromString
                            ),
                            response_serializer=policy_pb2.Policy.SerializeToString,
                        )
                    },
                ),
                grpc.method_handlers_generic_handler(
                    "google.logging.v2.ConfigServiceV2",
                    {"GetSink": _unary(self.get_sink, GetSinkRequest, LogSink)},
                ),
                grpc.method_handlers_generic_handler(
                    "google.cloud.scheduler.v1.CloudScheduler",
                    {
                        "GetJob": _unary(
                            self.get_job, scheduler_v1.GetJobRequest, scheduler_v1.Job
                        )
                    },
                ),
                grpc.method_handlers_generic_handler(
                    "google.cloud.secretmanager.v1.SecretManagerService",
                    {
                        "GetSecret": _unary(
                            self.get_secret,
                            secretmanager_v1.GetSecretRequest,
                            secretmanager_v1.Secret,
                        ),
                        "GetSecretVersion": _unary(
                            self.get_secret_version,
                            secretmanager_v1.GetSecretVersionRequest,
                            secretmanager_v1.SecretVersion,
                        ),
                    },
                ),
            ]
        )

    def _enter(self, method: str, context: grpc.ServicerContext, name: str) -> None:
        with self.lock:
            denied = method in self._denied
        if denied:
            abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"Permission '{PERMISSIONS[method]}' denied on resource '{name}' "
                "(or it may not exist).",
            )

    def _found(
        self, store: dict[str, Any], name: str, context: grpc.ServicerContext, kind: str
    ) -> Any:
        with self.lock:
            found = store.get(name)
            if found is not None:
                return copy.deepcopy(found)
        abort(context, grpc.StatusCode.NOT_FOUND, f"{kind} not found: {name}")

    def get_topic(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("GetTopic", context, request.topic)
        return self._found(self.topics, request.topic, context, "Topic")

    def get_iam_policy(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("GetIamPolicy", context, request.resource)
        return self._found(self.topic_policies, request.resource, context, "Topic")

    def get_subscription(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("GetSubscription", context, request.subscription)
        return self._found(
            self.subscriptions, request.subscription, context, "Subscription"
        )

    def get_sink(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("GetSink", context, request.sink_name)
        return self._found(self.sinks, request.sink_name, context, "Sink")

    def get_job(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("GetJob", context, request.name)
        return self._found(self.jobs, request.name, context, "Job")

    def get_secret(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("GetSecret", context, request.name)
        return self._found(self.secrets, request.name, context, "Secret")

    def get_secret_version(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("GetSecretVersion", context, request.name)
        secret, _, version = request.name.rpartition("/versions/")
        with self.lock:
            versions = [found for found, _ in self.versions.get(secret, [])]
            # `latest` is the most recently created version, whatever its state.
            chosen = (
                versions[-1:]
                if version == "latest"
                else [found for found in versions if found.name == request.name]
            )
            if chosen:
                return copy.deepcopy(chosen[0])
        abort(
            context,
            grpc.StatusCode.NOT_FOUND,
            f"Secret Version [{request.name}] not found.",
        )


class DeploymentSandbox(Sandbox):
    """The sandbox plus the deployment around the function; see the module doc."""

    def __init__(
        self,
        project: str = "demo-project",
        location: str = "europe-west1",
        services: Iterable[str] = DEFAULT_SERVICES,
        *,
        name: str = DEFAULT_NAME,
        secret_id: str = DEFAULT_SECRET_ID,
        host: str = "127.0.0.1",
        workers: int = 8,
    ) -> None:
        super().__init__(
            project,
            location,
            services,
            default_principal=f"{name}@{project}.iam.gserviceaccount.com",
            host=host,
            workers=workers,
        )
        self.name = name
        self.secret_id = secret_id
        self.deployment = DeploymentApis()
        self._deployment_server: _GrpcServer | None = None

    # Lifecycle.

    def start(self) -> DeploymentSandbox:
        """Start the sandbox and the deployment stand-ins, seeded healthy."""
        super().start()
        self.seed()
        self._deployment_server = _GrpcServer(
            self.deployment.handler(), self.host, self._workers
        )
        return self

    def stop(self) -> None:
        if self._deployment_server is not None:
            self._deployment_server.stop()
            self._deployment_server = None
        super().stop()

    def __enter__(self) -> DeploymentSandbox:
        return self.start()

    def reset(self) -> None:
        """Back to the healthy deployment, with no faults and no other entries."""
        super().reset()
        self.deployment.clear()
        self.seed()

    # Names, as terraform/ makes them.

    @property
    def deployment_endpoint(self) -> str:
        """`host:port` of the deployment admin APIs (plaintext gRPC)."""
        return self._started(self._deployment_server).endpoint

    @property
    def watched(self) -> list[str]:
        """Full names of the watched services (not the function's own)."""
        return [
            f"projects/{self.project}/locations/{self.location}/services/{service}"
            for service in self.service_names
        ]

    @property
    def function_principal(self) -> str:
        return f"{self.name}@{self.project}.iam.gserviceaccount.com"

    @property
    def invoker_principal(self) -> str:
        return f"{self.name}-invoker@{self.project}.iam.gserviceaccount.com"

    @property
    def run_role(self) -> str:
        return f"projects/{self.project}/roles/{self.name.replace('-', '_')}_run_iam"

    @property
    def function_uri(self) -> str:
        return f"https://{self.name}-{PROJECT_NUMBER}.{self.location}.run.app"

    @property
    def audit_topic(self) -> str:
        return f"projects/{self.project}/topics/{self.name}-audit"

    @property
    def dead_letter_topic(self) -> str:
        return f"projects/{self.project}/topics/{self.name}-audit-dead-letter"

    @property
    def subscription(self) -> str:
        return f"projects/{self.project}/subscriptions/{self.name}-audit-push"

    @property
    def sink(self) -> str:
        return f"projects/{self.project}/sinks/{self.name}-audit"

    @property
    def writer_identity(self) -> str:
        # The per-sink identity that unique_writer_identity = true gives a sink.
        return (
            f"serviceAccount:service-{PROJECT_NUMBER}"
            "@gcp-sa-logging.iam.gserviceaccount.com"
        )

    @property
    def job(self) -> str:
        return (
            f"projects/{self.project}/locations/{self.location}/jobs/{self.name}-tick"
        )

    @property
    def secret(self) -> str:
        return f"projects/{self.project}/secrets/{self.secret_id}"

    @property
    def webhook_url(self) -> str:
        """The secret's value: stored in the secret version, never served."""
        return "https://chat.example.com/v1/spaces/SANDBOX/messages?key=sandbox-key"

    def environment(self) -> dict[str, str]:
        """The variables `python -m watchdog doctor` reads to check this sandbox."""
        return {
            "WATCHDOG_SERVICES": ",".join(self.watched),
            "WATCHDOG_SELF_PRINCIPAL": self.function_principal,
            "WATCHDOG_RUN_ENDPOINT": self.run_endpoint,
            "WATCHDOG_LOGGING_ENDPOINT": self.logging_endpoint,
            "WATCHDOG_DEPLOYMENT_ENDPOINT": self.deployment_endpoint,
        }

    def doctor_arguments(self) -> list[str]:
        """The flags of `python -m watchdog doctor` for this deployment."""
        return [
            "--project",
            self.project,
            "--region",
            self.location,
            "--name",
            self.name,
            "--secret",
            self.secret_id,
        ]

    # The healthy deployment.

    def seed(self) -> None:
        """Create every resource as `terraform apply` would, plus recent heartbeats."""
        deployer = f"terraform@{self.project}.iam.gserviceaccount.com"
        function = self.run.add(self.name, self.function_uri)
        self.run.set_ingress(
            function.name, run_v2.IngressTraffic.INGRESS_TRAFFIC_INTERNAL_ONLY
        )
        self.write_policy(
            function.name,
            policy_pb2.Policy(
                bindings=[
                    policy_pb2.Binding(
                        role=INVOKER_ROLE,
                        members=[f"serviceAccount:{self.invoker_principal}"],
                    )
                ]
            ),
            principal=deployer,
        )
        for service in self.service_names:
            self.change_members(
                service,
                add={self.run_role: [f"serviceAccount:{self.function_principal}"]},
                principal=deployer,
            )
        apis = self.deployment
        apis.add_topic(self.audit_topic, publishers=[self.writer_identity])
        apis.add_topic(self.dead_letter_topic)
        with apis.lock:
            apis.sinks[self.sink] = LogSink(
                name=f"{self.name}-audit",
                destination=f"pubsub.googleapis.com/{self.audit_topic}",
                filter=sink_filter(self.project),
                writer_identity=self.writer_identity,
            )
            apis.subscriptions[self.subscription] = pubsub_v1.Subscription(
                name=self.subscription,
                topic=self.audit_topic,
                push_config=pubsub_v1.PushConfig(
                    push_endpoint=self.function_uri,
                    oidc_token=pubsub_v1.PushConfig.OidcToken(
                        service_account_email=self.invoker_principal,
                        audience=self.function_uri,
                    ),
                ),
                dead_letter_policy=pubsub_v1.DeadLetterPolicy(
                    dead_letter_topic=self.dead_letter_topic,
                    max_delivery_attempts=10,
                ),
            )
            apis.jobs[self.job] = scheduler_v1.Job(
                name=self.job,
                schedule="* * * * *",
                time_zone="Etc/UTC",
                state=scheduler_v1.Job.State.ENABLED,
                http_target=scheduler_v1.HttpTarget(
                    uri=self.function_uri,
                    http_method=scheduler_v1.HttpMethod.POST,
                    oidc_token=scheduler_v1.OidcToken(
                        service_account_email=self.invoker_principal,
                        audience=self.function_uri,
                    ),
                ),
                last_attempt_time=datetime.now(UTC) - timedelta(seconds=20),
            )
            apis.secrets[self.secret] = secretmanager_v1.Secret(name=self.secret)
        apis.add_secret_version(self.secret, self.webhook_url.encode())
        now = datetime.now(UTC)
        for minutes in (3, 2, 1):
            self.write_heartbeat(now - timedelta(minutes=minutes))

    def write_heartbeat(self, at: datetime) -> None:
        """The record the function logs after each tick, as Cloud Run stores it."""
        entry = LogEntryPb()
        entry.log_name = f"projects/{self.project}/logs/run.googleapis.com%2Fstdout"
        entry.resource.type = "cloud_run_revision"
        entry.resource.labels.update(
            {
                "project_id": self.project,
                "service_name": self.name,
                "location": self.location,
                "configuration_name": self.name,
                "revision_name": f"{self.name}-00001-sbx",
            }
        )
        entry.severity = 200  # INFO
        json_format.ParseDict(
            {
                "message": f"tick checked {len(self.service_names)} services, "
                "0 drifted",
                "logger": "watchdog.reconcile",
                "heartbeat": True,
                "source": "tick",
                "services": len(self.service_names),
                "drifted": 0,
                "failed": 0,
            },
            entry.json_payload,
        )
        entry.timestamp.FromDatetime(at)
        self.store.write(entry)

    # Ways to break it, one piece each.

    def revoke_watchdog_role(self, service: str) -> None:
        """Take the custom role on `service` away from the function's account."""
        self.change_members(
            service,
            remove={self.run_role: [f"serviceAccount:{self.function_principal}"]},
        )

    def withhold_permissions(self, service: str, permissions: Sequence[str]) -> None:
        """TestIamPermissions on `service` leaves these out for every caller."""
        self.run.withhold_permissions(service, permissions)

    def delete_topic(self, topic: str | None = None) -> None:
        """Delete a topic (default: the audit topic)."""
        self.deployment.delete_topic(topic or self.audit_topic)

    def revoke_sink_publisher(self) -> None:
        """Drop the sink writer identity's publisher grant on the audit topic."""
        self.deployment.remove_publisher(self.audit_topic, self.writer_identity)

    def delete_sink(self) -> None:
        with self.deployment.lock:
            del self.deployment.sinks[self.sink]

    def change_sink(
        self,
        *,
        filter: str | None = None,
        destination: str | None = None,
        disabled: bool | None = None,
    ) -> None:
        with self.deployment.lock:
            sink = self.deployment.sinks[self.sink]
            if filter is not None:
                sink.filter = filter
            if destination is not None:
                sink.destination = destination
            if disabled is not None:
                sink.disabled = disabled

    def delete_subscription(self) -> None:
        with self.deployment.lock:
            del self.deployment.subscriptions[self.subscription]

    def pause_job(self) -> None:
        self.change_job(state=scheduler_v1.Job.State.PAUSED)

    def change_job(
        self,
        *,
        state: int | None = None,
        schedule: str | None = None,
        last_status: tuple[int, str] | None = None,
    ) -> None:
        with self.deployment.lock:
            job = self.deployment.jobs[self.job]
            if state is not None:
                job.state = state
            if schedule is not None:
                job.schedule = schedule
            if last_status is not None:
                job.status.code, job.status.message = last_status

    def make_function_public(self, member: str = "allUsers") -> None:
        """Grant `member` the invoker role on the function's own service."""
        self.change_members(self.name, add={INVOKER_ROLE: [member]})

    def set_function_ingress(self, ingress: int) -> None:
        self.run.set_ingress(self.name, ingress)

    def revoke_function_invoker(self) -> None:
        """Take roles/run.invoker on the function away from the invoker account."""
        self.change_members(
            self.name,
            remove={INVOKER_ROLE: [f"serviceAccount:{self.invoker_principal}"]},
        )

    def disable_secret_version(self) -> None:
        """Disable the webhook secret's latest version."""
        self.deployment.disable_latest_version(self.secret)

    def delete_secret(self) -> None:
        with self.deployment.lock:
            del self.deployment.secrets[self.secret]
            del self.deployment.versions[self.secret]

    def stop_heartbeats(self, silent_for: timedelta = timedelta(minutes=40)) -> None:
        """Make the newest heartbeat `silent_for` old.

        NB: the log store can only be cleared as a whole, so this also drops the
        audit entries written so far; the doctor reads none of them.
        """
        self.store.clear()
        self.write_heartbeat(datetime.now(UTC) - silent_for)

    def deny(self, method: str) -> None:
        """Refuse a deployment stand-in method (e.g. "GetSink") from now on."""
        self.deployment.deny(method)


def sink_filter(project: str) -> str:
    """The audit sink's filter as terraform/logging.tf writes it."""
    names = " OR\n  ".join(f'"{method}"' for method in methods.WATCHED_METHODS)
    return (
        f'logName="projects/{project}/logs/{methods.ACTIVITY_LOG_ID}"\n'
        f'AND protoPayload.serviceName="{methods.SERVICE_NAME}"\n'
        f"AND protoPayload.methodName=(\n  {names}\n)"
    )
