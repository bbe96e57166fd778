"""The gateway to the deployment's own resources, for `python -m watchdog doctor`.

The function never imports this module: only the doctor reads the audit topic, the
push subscription, the log sink, the scheduler job, the webhook secret's metadata and
the function's heartbeat records. Outside the sandbox's stand-ins, it is the only
module that imports `google-cloud-scheduler` and `google-cloud-secret-manager`, and
the only one that uses the Pub/Sub admin surface and the Logging sink API.

Every read answers with a value of this module, or None when the resource does not
exist, because "missing" is an answer the doctor reports, not an error. A refused
call raises `MissingPermission` naming the one permission that call needs, so the
doctor can say exactly what to grant; the caller is whoever runs the doctor
(Application Default Credentials), not the function's account. Secret payloads are
never read: only the secret's and its latest version's metadata.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from google.api_core import exceptions
from google.api_core.retry import Retry
from google.rpc import code_pb2

from watchdog.api_calls import TRANSIENT, bounded_retry, last_error, status_text
from watchdog.audit_log import format_time
from watchdog.errors import (
    ConfigError,
    PermanentError,
    PermissionDenied,
    RetryableError,
    WatchdogError,
)
from watchdog.model import Policy
from watchdog.run_api import policy_from_proto

MAX_ATTEMPTS = 3
RETRY_DEADLINE = 15.0

_Result = TypeVar("_Result")


class MissingPermission(PermissionDenied):
    """The caller may not make one read; `permission` is what it lacks."""

    def __init__(self, permission: str, resource: str, message: str) -> None:
        super().__init__(message)
        self.permission = permission
        self.resource = resource


@dataclass(frozen=True)
class Topic:
    name: str


@dataclass(frozen=True)
class Subscription:
    name: str
    topic: str  # "_deleted-topic_" once its topic is deleted
    push_endpoint: str  # "" for a pull subscription
    push_principal: str  # the OIDC token's service account, or ""
    dead_letter_topic: str  # "" without a dead-letter policy


@dataclass(frozen=True)
class Sink:
    name: str
    destination: str
    filter: str
    writer_identity: str  # "serviceAccount:..." as IAM members are written
    disabled: bool


@dataclass(frozen=True)
class SchedulerJob:
    name: str
    schedule: str
    time_zone: str
    state: str  # ENABLED, PAUSED, DISABLED, UPDATE_FAILED
    target_uri: str  # the HTTP target, or "" for another kind of target
    target_principal: str  # the OIDC token's service account, or ""
    last_status: str  # "CODE: message" of a failed last attempt; "" otherwise
    last_attempt: datetime | None


@dataclass(frozen=True)
class Secret:
    name: str


@dataclass(frozen=True)
class SecretVersion:
    name: str  # the version's real name, "latest" resolved to a number
    state: str  # ENABLED, DISABLED, DESTROYED


def _retry() -> Retry:
    return bounded_retry(attempts=MAX_ATTEMPTS, deadline=RETRY_DEADLINE, maximum=2.0)


def translate_error(
    error: exceptions.GoogleAPIError, action: str, resource: str, permission: str
) -> WatchdogError:
    """The watchdog error for a client-library error on `action` of `resource`."""
    if isinstance(error, exceptions.RetryError):
        return RetryableError(
            f"{action} {resource}: the API kept failing; "
            f"last error: {last_error(error)}"
        )
    status = status_text(error)
    if isinstance(error, TRANSIENT):
        return RetryableError(
            f"{action} {resource}: still failing after {MAX_ATTEMPTS} attempts: "
            f"{status}"
        )
    if isinstance(error, exceptions.PermissionDenied):
        return MissingPermission(
            permission,
            resource,
            f"{action} {resource}: refused; your identity (Application Default "
            f"Credentials) needs {permission}. {status}",
        )
    if isinstance(error, exceptions.Unauthenticated):
        return PermanentError(
            f"{action} {resource}: not signed in ({status}); run "
            "`gcloud auth application-default login`"
        )
    return PermanentError(f"{action} {resource}: unexpected API error {status}")


def _timestamp(value: Any) -> datetime | None:
    """An aware datetime from a proto-plus timestamp field (None when unset)."""
    return value if isinstance(value, datetime) else None


class DeploymentApi:
    """Reads the deployment's topics, subscription, sink, job, secret and logs.

    With `endpoint` ("host:port") every admin API is plaintext gRPC with no
    credentials to one sandbox server; `logging_endpoint` does the same for the
    Cloud Logging entries API. Without them each client goes to Google with
    Application Default Credentials. Clients are built on first use.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        logging_endpoint: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.endpoint = endpoint
        self.logging_endpoint = logging_endpoint
        self.timeout = timeout
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}

    # Clients.

    def _client(self, kind: str) -> Any:
        with self._lock:
            if kind not in self._clients:
                self._clients[kind] = self._build_client(kind)
            return self._clients[kind]

    def _build_client(self, kind: str) -> Any:
        try:
            client_class, transport_class = _CLIENT_CLASSES[kind]()
        except ImportError as error:
            raise ConfigError(
                f"{error.name} is not installed: `python -m watchdog doctor` needs "
                "the packages in requirements-dev.txt (pip install -r "
                "requirements-dev.txt)"
            ) from error
        endpoint = self.logging_endpoint if kind == "entries" else self.endpoint
        if endpoint:
            import grpc

            channel = grpc.insecure_channel(endpoint)
            return client_class(transport=transport_class(channel=channel))
        import google.auth.exceptions

        try:
            return client_class()
        except google.auth.exceptions.DefaultCredentialsError as error:
            raise ConfigError(
                "no Application Default Credentials: run `gcloud auth "
                "application-default login`, or set WATCHDOG_DEPLOYMENT_ENDPOINT "
                "to a sandbox"
            ) from error

    def _read(
        self,
        call: Callable[[], _Result],
        *,
        action: str,
        resource: str,
        permission: str,
    ) -> _Result | None:
        """The call's answer, None for NOT_FOUND; other errors translated."""
        try:
            return call()
        except exceptions.NotFound:
            return None
        except exceptions.GoogleAPIError as error:
            raise translate_error(error, action, resource, permission) from error

    # Pub/Sub.

    def get_topic(self, name: str) -> Topic | None:
        """The topic `projects/P/topics/T`, or None if it does not exist."""
        topic = self._read(
            lambda: self._client("publisher").get_topic(
                request={"topic": name}, retry=_retry(), timeout=self.timeout
            ),
            action="reading topic",
            resource=name,
            permission="pubsub.topics.get",
        )
        return None if topic is None else Topic(name=topic.name)

    def get_topic_policy(self, name: str) -> Policy | None:
        """The topic's IAM policy, or None if the topic does not exist."""
        proto = self._read(
            lambda: self._client("publisher").get_iam_policy(
                request={"resource": name}, retry=_retry(), timeout=self.timeout
            ),
            action="reading the IAM policy of topic",
            resource=name,
            permission="pubsub.topics.getIamPolicy",
        )
        return None if proto is None else policy_from_proto(proto)

    def get_subscription(self, name: str) -> Subscription | None:
        """The subscription `projects/P/subscriptions/S`, or None."""
        found = self._read(
            lambda: self._client("subscriber").get_subscription(
                request={"subscription": name}, retry=_retry(), timeout=self.timeout
            ),
            action="reading subscription",
            resource=name,
            permission="pubsub.subscriptions.get",
        )
        if found is None:
            return None
        return Subscription(
            name=found.name,
            topic=found.topic,
            push_endpoint=found.push_config.push_endpoint,
            push_principal=found.push_config.oidc_token.service_account_email,
            dead_letter_topic=found.dead_letter_policy.dead_letter_topic,
        )

    # Cloud Logging.

    def get_sink(self, name: str) -> Sink | None:
        """The log sink `projects/P/sinks/S`, or None."""
        sink = self._read(
            lambda: self._client("sinks").get_sink(
                request={"sink_name": name}, retry=_retry(), timeout=self.timeout
            ),
            action="reading log sink",
            resource=name,
            permission="logging.sinks.get",
        )
        if sink is None:
            return None
        return Sink(
            name=name,
            destination=sink.destination,
            filter=sink.filter,
            writer_identity=sink.writer_identity,
            disabled=sink.disabled,
        )

    def newest_entry_time(
        self, project: str, filter_text: str, *, since: datetime
    ) -> datetime | None:
        """When the newest entry matching `filter_text` since `since` was written.

        The time bound is always added here, with a newest-first order and a page
        of one, so no caller can send an unbounded query (PITFALLS 9).
        """
        bounded = f'{filter_text} AND timestamp>="{format_time(since)}"'
        resource = f"projects/{project}"
        page = self._read(
            lambda: next(
                iter(
                    self._client("entries")
                    .list_log_entries(
                        request={
                            "resource_names": [resource],
                            "filter": bounded,
                            "order_by": "timestamp desc",
                            "page_size": 1,
                        },
                        retry=_retry(),
                        timeout=self.timeout,
                    )
                    .pages
                )
            ),
            action="listing log entries in",
            resource=resource,
            permission="logging.logEntries.list",
        )
        if page is None or not page.entries:
            return None
        return _timestamp(page.entries[0].timestamp)

    # Cloud Scheduler.

    def get_job(self, name: str) -> SchedulerJob | None:
        """The job `projects/P/locations/R/jobs/J`, or None."""
        job = self._read(
            lambda: self._client("scheduler").get_job(
                request={"name": name}, retry=_retry(), timeout=self.timeout
            ),
            action="reading scheduler job",
            resource=name,
            permission="cloudscheduler.jobs.get",
        )
        if job is None:
            return None
        return SchedulerJob(
            name=job.name,
            schedule=job.schedule,
            time_zone=job.time_zone,
            state=job.state.name,
            target_uri=job.http_target.uri,
            target_principal=job.http_target.oidc_token.service_account_email,
            last_status=(
                f"{code_pb2.Code.Name(job.status.code)}: {job.status.message}"
                if job.status.code
                else ""
            ),
            last_attempt=_timestamp(job.last_attempt_time),
        )

    # Secret Manager: metadata only, never a payload.

    def get_secret(self, name: str) -> Secret | None:
        """The secret `projects/P/secrets/S` (its metadata), or None."""
        secret = self._read(
            lambda: self._client("secrets").get_secret(
                request={"name": name}, retry=_retry(), timeout=self.timeout
            ),
            action="reading secret",
            resource=name,
            permission="secretmanager.secrets.get",
        )
        return None if secret is None else Secret(name=secret.name)

    def get_latest_version(self, secret: str) -> SecretVersion | None:
        """The metadata of the secret's most recently created version, or None.

        `latest` is what the function's secret environment variable names, so its
        state is what a new function instance meets when it starts.
        """
        name = f"{secret}/versions/latest"
        version = self._read(
            lambda: self._client("secrets").get_secret_version(
                request={"name": name}, retry=_retry(), timeout=self.timeout
            ),
            action="reading secret version",
            resource=name,
            permission="secretmanager.versions.get",
        )
        if version is None:
            return None
        return SecretVersion(name=version.name, state=version.state.name)

    def close(self) -> None:
        """Close every channel; later calls build new clients."""
        with self._lock:
            clients, self._clients = self._clients, {}
        for client in clients.values():
            client.transport.close()


def _publisher() -> tuple[Any, Any]:
    from google.pubsub_v1.services.publisher import PublisherClient
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    return PublisherClient, PublisherGrpcTransport


def _subscriber() -> tuple[Any, Any]:
    from google.pubsub_v1.services.subscriber import SubscriberClient
    from google.pubsub_v1.services.subscriber.transports import (
        SubscriberGrpcTransport,
    )

    return SubscriberClient, SubscriberGrpcTransport


def _sinks() -> tuple[Any, Any]:
    from google.cloud.logging_v2.services.config_service_v2 import (
        ConfigServiceV2Client,
    )
    from google.cloud.logging_v2.services.config_service_v2.transports import (
        ConfigServiceV2GrpcTransport,
    )

    return ConfigServiceV2Client, ConfigServiceV2GrpcTransport


def _entries() -> tuple[Any, Any]:
    from google.cloud.logging_v2.services.logging_service_v2 import (
        LoggingServiceV2Client,
    )
    from google.cloud.logging_v2.services.logging_service_v2.transports import (
        LoggingServiceV2GrpcTransport,
    )

    return LoggingServiceV2Client, LoggingServiceV2GrpcTransport


def _scheduler() -> tuple[Any, Any]:
    from google.cloud.scheduler_v1.services.cloud_scheduler import (
        CloudSchedulerClient,
    )
    from google.cloud.scheduler_v1.services.cloud_scheduler.transports import (
        CloudSchedulerGrpcTransport,
    )

    return CloudSchedulerClient, CloudSchedulerGrpcTransport


def _secrets() -> tuple[Any, Any]:
    from google.cloud.secretmanager_v1.services.secret_manager_service import (
        SecretManagerServiceClient,
    )
    from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (  # noqa: E501
        SecretManagerServiceGrpcTransport,
    )

    return SecretManagerServiceClient, SecretManagerServiceGrpcTransport


# Imported on first use, so the doctor needs only the libraries of the APIs it calls
# and importing this module needs none of them.
_CLIENT_CLASSES: dict[str, Callable[[], tuple[Any, Any]]] = {
    "publisher": _publisher,
    "subscriber": _subscriber,
    "sinks": _sinks,
    "entries": _entries,
    "scheduler": _scheduler,
    "secrets": _secrets,
}
