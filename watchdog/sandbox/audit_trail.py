"""The sandbox's Admin Activity audit trail, and the log sink that forwards it.

Every IAM write made through the sandbox (and every invoker-check change) becomes a
LogEntry shaped like the ones Cloud Run writes: the same keys, nesting and value
formats as the corpus samples, so the watchdog's parser is exercised on the real
layout rather than on a convenient one. `serviceData.policyDelta` is left out unless
asked for, because no real Cloud Run entry carrying it has been seen.

A real log sink routes entries to Pub/Sub, which pushes them to the function. The
`Forwarder` does the same on a background thread: an HTTP POST of a push envelope to
a URL, or a publish to a topic on Google's Pub/Sub emulator (which then pushes). The
RPC that caused the entry never waits for it and never sees a forwarding failure.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import logging
import queue
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

from watchdog.sandbox.faults import Faults

log = logging.getLogger(__name__)

AUDIT_LOG_TYPE = "type.googleapis.com/google.cloud.audit.AuditLog"
ACTIVITY_LOG = "cloudaudit.googleapis.com%2Factivity"
PUSH_USER_AGENT = (
    "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"
)
PUSH_TIMEOUT = 5.0

_PEER = re.compile(r"^(?:ipv4:(?P<v4>[^:]+)|ipv6:\[(?P<v6>[^\]]+)\]):\d+$")


@dataclass(frozen=True)
class Caller:
    """Who made a call, as the audit log records it."""

    principal: str
    delegation: tuple[str, ...] = ()  # impersonation chain, origin first
    ip: str = "127.0.0.1"
    user_agent: str = ""


def caller_from_metadata(
    metadata: Iterable[tuple[str, str | bytes]], peer: str, default_principal: str
) -> Caller:
    """The caller of a gRPC call: sandbox metadata, user agent and peer address."""
    values: dict[str, str] = {}
    for key, value in metadata:
        values[key.lower()] = value.decode() if isinstance(value, bytes) else value
    delegation = tuple(
        hop.strip() for hop in values.get("x-sandbox-delegation", "").split(",")
    )
    user_agent = values.get("user-agent", "")
    # GAPIC clients leave gRPC's own user agent alone and describe themselves in
    # x-goog-api-client; that is what real entries show for them.
    if user_agent.startswith("grpc-") and values.get("x-goog-api-client"):
        user_agent = values["x-goog-api-client"]
    return Caller(
        principal=values.get("x-sandbox-principal", "").strip() or default_principal,
        delegation=tuple(hop for hop in delegation if hop),
        ip=ip_from_peer(peer),
        user_agent=user_agent,
    )


def ip_from_peer(peer: str) -> str:
    """`127.0.0.1` from gRPC's `ipv4:127.0.0.1:5678`; the text itself otherwise."""
    if match := _PEER.match(peer):
        return match["v4"] or match["v6"]
    return peer


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds, as audit entries carry `timestamp`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_time_ns(nanoseconds: int) -> str:
    """RFC 3339 in UTC with nanoseconds, as `receiveTimestamp` is written."""
    seconds, nanos = divmod(nanoseconds, 1_000_000_000)
    whole = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{nanos:09d}Z"


def principal_subject(principal: str) -> str:
    """The `principalSubject` IAM writes beside an email."""
    if principal.startswith("principal://") or ":" in principal:
        return principal
    if principal.endswith(".gserviceaccount.com"):
        return f"serviceAccount:{principal}"
    return f"user:{principal}"


def authentication_info(caller: Caller) -> dict[str, Any]:
    """`authenticationInfo` for a caller, with its delegation chain when it has one."""
    info: dict[str, Any] = {}
    if caller.principal.startswith("principal://"):
        info["principalSubject"] = caller.principal
    else:
        info["principalEmail"] = caller.principal
        info["principalSubject"] = principal_subject(caller.principal)
    if caller.delegation:
        info["serviceAccountDelegationInfo"] = [
            {"principalSubject": hop}
            if hop.startswith("principal://")
            else {"firstPartyPrincipal": {"principalEmail": hop}}
            for hop in caller.delegation
        ]
    return info


def policy_delta(
    before: Mapping[str, Any], after: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """`bindingDeltas` between two policies in JSON form: REMOVEs, then ADDs."""

    def grants(policy: Mapping[str, Any]) -> list[tuple[str, str, str]]:
        found: list[tuple[str, str, str]] = []
        for binding in policy.get("bindings", []):
            condition = json.dumps(binding.get("condition"), sort_keys=True)
            for member in binding.get("members", []):
                found.append((binding["role"], member, condition))
        return found

    old, new = grants(before), grants(after)
    deltas: list[dict[str, Any]] = []
    for action, source, other in (("REMOVE", old, new), ("ADD", new, old)):
        for role, member, condition in source:
            if (role, member, condition) in other:
                continue
            delta: dict[str, Any] = {"action": action, "role": role, "member": member}
            if condition != "null":
                delta["condition"] = json.loads(condition)
            deltas.append(delta)
    return deltas


@dataclass(frozen=True)
class Failure:
    code: int
    message: str


class EntryFactory:
    """Builds Admin Activity entries for one project, with unique insert ids."""

    def __init__(self, project: str, location: str) -> None:
        self.project = project
        self.location = location
        self._counter = itertools.count(1)
        # Unique across sandbox runs too, so ids from two runs never collide.
        self._prefix = f"{time.time_ns() // 1000 % 10**10:010x}"

    @property
    def log_name(self) -> str:
        return f"projects/{self.project}/logs/{ACTIVITY_LOG}"

    def insert_id(self) -> str:
        return f"{self._prefix}{next(self._counter):06x}"

    def build(
        self,
        *,
        method: str,
        resource_name: str,
        permission: str,
        caller: Caller,
        request: dict[str, Any],
        response: dict[str, Any] | None,
        failure: Failure | None = None,
        service_data: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """One LogEntry in its JSON form, as Cloud Logging and a sink deliver it."""
        moment = now or datetime.now(UTC)
        timestamp = format_time(moment)
        # Real entries are received a fraction of a second after the call.
        received = int(moment.timestamp() * 1_000_000) * 1000 + 123_456_789
        denied = failure is not None and failure.code == 7
        payload: dict[str, Any] = {
            "@type": AUDIT_LOG_TYPE,
            "status": (
                {}
                if failure is None
                else {"code": failure.code, "message": failure.message}
            ),
            "authenticationInfo": authentication_info(caller),
            "requestMetadata": {
                "callerIp": caller.ip,
                "callerSuppliedUserAgent": caller.user_agent,
                "requestAttributes": {"time": timestamp, "auth": {}},
                "destinationAttributes": {},
            },
            "serviceName": "run.googleapis.com",
            "methodName": method,
            "authorizationInfo": [
                {
                    "resource": resource_name,
                    "permission": permission,
                    "granted": not denied,
                    "permissionType": "ADMIN_WRITE",
                    "resourceAttributes": {
                        "service": "run.googleapis.com",
                        "name": resource_name,
                        "type": "run.googleapis.com/Service",
                    },
                }
            ],
            "resourceName": resource_name,
            "request": request,
            "resourceLocation": {"currentLocations": [self.location]},
        }
        if service_data is not None:
            payload["serviceData"] = service_data
        if response is not None:
            payload["response"] = response
        return {
            "protoPayload": payload,
            "insertId": self.insert_id(),
            "resource": {
                "type": "cloud_run_revision",
                "labels": {
                    "service_name": "",
                    "revision_name": "",
                    "configuration_name": "",
                    "project_id": self.project,
                    "location": self.location,
                },
            },
            "timestamp": timestamp,
            "severity": "NOTICE" if failure is None else "ERROR",
            "logName": self.log_name,
            "receiveTimestamp": format_time_ns(received),
        }


def push_envelope(
    entry: Mapping[str, Any], *, message_id: str, subscription: str
) -> dict[str, Any]:
    """The body Pub/Sub pushes for one sink-published entry."""
    published = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    data = base64.b64encode(json.dumps(entry).encode()).decode()
    message = {
        "attributes": {"logging.googleapis.com/timestamp": entry.get("timestamp", "")},
        "data": data,
        "messageId": message_id,
        "message_id": message_id,  # real push bodies carry both spellings
        "publishTime": published,
        "publish_time": published,
    }
    return {"message": message, "subscription": subscription}


class Forwarder:
    """A log sink: sends each entry to a push URL or a Pub/Sub emulator topic.

    Delivery runs on one background thread, in order. An HTTP push is attempted a
    few times (Pub/Sub redelivers on a non-2xx answer too, for much longer); a
    failure is logged and the entry is given up.
    """

    def __init__(
        self,
        project: str,
        faults: Faults,
        *,
        sink_url: str | None = None,
        pubsub_emulator_host: str | None = None,
        topic: str | None = None,
        subscription: str = "audit-sink",
        push_attempts: int = 3,
    ) -> None:
        if bool(pubsub_emulator_host) != bool(topic):
            raise ValueError("pubsub_emulator_host and topic go together")
        self.project = project
        self._faults = faults
        self._sink_url = sink_url
        self._emulator = pubsub_emulator_host
        self._topic = _qualify(project, "topics", topic) if topic else None
        self.subscription = _qualify(project, "subscriptions", subscription)
        self._push_attempts = max(1, push_attempts)
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None
        self._message_ids = itertools.count(int(time.time()) * 1000)
        self._publisher: Any = None
        self._subscriber: Any = None
        self._pushing_to: str | None = None  # push endpoint set on the subscription
        self.forwarded = 0
        self.dropped = 0
        self.failed = 0

    @property
    def sink_url(self) -> str | None:
        return self._sink_url

    def set_sink_url(self, url: str | None) -> None:
        """Send later entries to `url` (with the emulator: its push endpoint)."""
        self._sink_url = url

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="sandbox-log-sink", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None
        if self._publisher is not None:
            self._publisher.stop()
            self._publisher = None
        if self._subscriber is not None:
            self._subscriber.close()
            self._subscriber = None

    def submit(self, entry: dict[str, Any]) -> None:
        """Queue one entry for delivery; returns at once."""
        with self._idle:
            self._pending += 1
        self._queue.put(entry)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every submitted entry is delivered, dropped or given up."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _run(self) -> None:
        while (entry := self._queue.get()) is not None:
            try:
                self._deliver(entry)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _deliver(self, entry: dict[str, Any]) -> None:
        fields = {"insert_id": entry.get("insertId")}
        if self._faults.take_drop():
            self.dropped += 1
            log.info("sink dropped an audit entry (fault)", extra={"fields": fields})
            return
        if self._emulator:
            try:
                self._publish(entry)
            except Exception:
                # Any failure of the emulator or its client must stay on this thread:
                # the RPC that wrote the entry has already answered.
                self.failed += 1
                log.exception("publishing to the Pub/Sub emulator failed")
            else:
                self.forwarded += 1
            return
        url = self._sink_url
        if not url:
            return
        body = push_envelope(
            entry,
            message_id=str(next(self._message_ids)),
            subscription=self.subscription,
        )
        for attempt in range(1, self._push_attempts + 1):
            try:
                answer = requests.post(
                    url,
                    json=body,
                    headers={"User-Agent": PUSH_USER_AGENT},
                    timeout=PUSH_TIMEOUT,
                )
            except requests.RequestException as error:
                outcome = f"{type(error).__name__}: {error}"
            else:
                if answer.ok:
                    self.forwarded += 1
                    return
                outcome = f"HTTP {answer.status_code}"
            log.warning(
                "push of an audit entry failed (attempt %d of %d): %s",
                attempt,
                self._push_attempts,
                outcome,
                extra={"fields": fields},
            )
            if attempt < self._push_attempts:
                time.sleep(0.2 * attempt)
        self.failed += 1

    def _publish(self, entry: dict[str, Any]) -> None:
        from google.cloud import pubsub_v1  # type: ignore[attr-defined]

        if self._publisher is None:
            import grpc
            from google.pubsub_v1.services.publisher.transports import (
                PublisherGrpcTransport,
            )
            from google.pubsub_v1.services.subscriber.transports import (
                SubscriberGrpcTransport,
            )

            # An insecure channel to the emulator for these clients only, rather
            # than PUBSUB_EMULATOR_HOST, which would divert every Pub/Sub client
            # in this process.
            self._publisher = pubsub_v1.PublisherClient(
                transport=PublisherGrpcTransport(
                    channel=grpc.insecure_channel(self._emulator)
                )
            )
            self._subscriber = pubsub_v1.SubscriberClient(
                transport=SubscriberGrpcTransport(
                    channel=grpc.insecure_channel(self._emulator)
                )
            )
            self._ensure_topic()
        self._ensure_subscription()
        future = self._publisher.publish(
            self._topic,
            json.dumps(entry).encode(),
            **{"logging.googleapis.com/timestamp": entry.get("timestamp", "")},
        )
        future.result(timeout=PUSH_TIMEOUT)

    def _ensure_topic(self) -> None:
        from google.api_core import exceptions

        with contextlib.suppress(exceptions.AlreadyExists):
            self._publisher.create_topic(name=self._topic, timeout=PUSH_TIMEOUT)

    def _ensure_subscription(self) -> None:
        """A push subscription from the topic to the sink URL, made or re-aimed."""
        from google.api_core import exceptions
        from google.pubsub_v1 import types

        url = self._sink_url
        if not url or url == self._pushing_to:
            return
        push = types.PushConfig(push_endpoint=url)
        try:
            self._subscriber.create_subscription(
                request={
                    "name": self.subscription,
                    "topic": self._topic,
                    "push_config": push,
                },
                timeout=PUSH_TIMEOUT,
            )
        except exceptions.AlreadyExists:
            self._subscriber.modify_push_config(
                request={"subscription": self.subscription, "push_config": push},
                timeout=PUSH_TIMEOUT,
            )
        self._pushing_to = url


def _qualify(project: str, kind: str, name: str) -> str:
    """`projects/P/KIND/NAME` from a short or already-qualified name."""
    return name if name.startswith("projects/") else f"projects/{project}/{kind}/{name}"
