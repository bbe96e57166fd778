"""The project's own small value types.

Everything above the gateways speaks in these: a service name, a policy, a drift,
a change read from the audit log, a trigger, an incident. They are frozen so that
a value read from an API can be passed around and compared without surprises.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

INVOKER_ROLE = "roles/run.invoker"

_FULL_NAME = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
    r"/services/(?P<service>[^/]+)$"
)
_V1_NAME = re.compile(r"^namespaces/(?P<project>[^/]+)/services/(?P<service>[^/]+)$")


@dataclass(frozen=True, order=True)
class ServiceName:
    """A Cloud Run service, `projects/PROJECT/locations/REGION/services/NAME`."""

    project: str
    location: str
    service: str

    @classmethod
    def parse(cls, text: str, *, location: str | None = None) -> ServiceName:
        """Parse a full v2 name, or a v1 `namespaces/P/services/S` name with a location.

        v1 names carry no region, so the caller passes the one it found elsewhere
        (the log entry's `resource.labels.location`). Raises ValueError otherwise.
        """
        text = text.strip()
        if match := _FULL_NAME.match(text):
            return cls(match["project"], match["location"], match["service"])
        if match := _V1_NAME.match(text):
            if not location:
                raise ValueError(f"{text!r} names no location and none was given")
            return cls(match["project"], location, match["service"])
        raise ValueError(
            f"{text!r} is not a Cloud Run service name; expected "
            "projects/PROJECT/locations/REGION/services/NAME"
        )

    @property
    def full(self) -> str:
        return (
            f"projects/{self.project}/locations/{self.location}/services/{self.service}"
        )

    @property
    def v1_name(self) -> str:
        return f"namespaces/{self.project}/services/{self.service}"

    def __str__(self) -> str:
        return self.full


@dataclass(frozen=True)
class Condition:
    expression: str
    title: str = ""
    description: str = ""


@dataclass(frozen=True)
class Binding:
    role: str
    members: tuple[str, ...]
    condition: Condition | None = None


@dataclass(frozen=True)
class AuditLogConfig:
    log_type: int
    exempted_members: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuditConfig:
    service: str
    audit_log_configs: tuple[AuditLogConfig, ...] = ()


@dataclass(frozen=True)
class Policy:
    """An IAM policy as read from the API; `etag` is the raw bytes of the read."""

    bindings: tuple[Binding, ...] = ()
    etag: bytes = b""
    version: int = 0
    audit_configs: tuple[AuditConfig, ...] = ()


@dataclass(frozen=True)
class DesiredState:
    """Who must and who must not hold the invoker role on a watched service."""

    public_members: tuple[str, ...] = ("allUsers",)
    forbidden_members: tuple[str, ...] = ("allAuthenticatedUsers",)


@dataclass(frozen=True)
class Drift:
    """How a policy differs from the desired state.

    `missing` are public members with no unconditional invoker binding (a
    conditional grant does not count: it is not the guaranteed public access).
    `forbidden` are forbidden members that hold the invoker role in any binding.
    """

    missing: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.missing or self.forbidden)


@dataclass(frozen=True)
class ServiceInfo:
    """What the watchdog needs to know about a service besides its policy."""

    name: ServiceName
    uri: str
    invoker_iam_disabled: bool = False


@dataclass(frozen=True)
class Change:
    """One Admin Activity audit-log entry about a Cloud Run service, as parsed.

    `actor` is the principal that made the call; `delegation` is the impersonation
    chain, origin first; `origin` is the first identity of that chain, else the
    actor. `removed`/`added` are `{role: members}` and are None unless the entry
    states them (a policyDelta); entries rarely do for Cloud Run.
    """

    service: ServiceName | None
    method: str
    actor: str | None
    origin: str | None
    delegation: tuple[str, ...]
    caller_ip: str | None
    user_agent: str | None
    time: datetime | None
    insert_id: str | None
    failed: bool
    status_message: str | None = None
    removed: Mapping[str, tuple[str, ...]] | None = None
    added: Mapping[str, tuple[str, ...]] | None = None
    resource_name: str | None = None
    # Members holding roles/run.invoker unconditionally once the call was done,
    # from the entry's response policy (else its request policy); None when the
    # entry shows no policy (UpdateService, ReplaceService, ...).
    invoker_after: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Tick:
    """A request to check every watched service (scheduler, manual run)."""

    source: str
    scheduled_at: datetime | None = None


@dataclass(frozen=True)
class AuditEvent:
    """A delivered audit-log entry: check the one service it names, now."""

    change: Change
    delivery: str


@dataclass(frozen=True)
class Ignored:
    """A delivery that is acknowledged without action; `reason` is logged."""

    reason: str
    delivery: str = ""


Trigger = Tick | AuditEvent | Ignored


class Action(enum.StrEnum):
    """What the watchdog did about one service."""

    NONE = "none"  # in sync, nothing to do
    RESTORED = "restored"
    REPORTED = "reported"  # report mode: drift found, nothing written
    FAILED = "failed"  # tried to restore and could not


class ProbeResult(enum.StrEnum):
    OK = "ok"
    FORBIDDEN = (
        "forbidden"  # 403 from Google's front end: IAM (maybe still propagating)
    )
    ERROR = "error"  # any other status
    UNREACHABLE = "unreachable"  # timeout, DNS, connection refused
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Probe:
    result: ProbeResult
    status: int | None = None
    detail: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class Escalation:
    """One identity keeps undoing the restore (PITFALLS 8); said once, not per cycle.

    `actor` is the actor key: the origin of the delegation chain, else the actor.
    `tools` are the tools seen in those calls' user agents, e.g. "Terraform".
    """

    actor: str
    restores: int
    first_at: datetime
    tools: tuple[str, ...] = ()
    quiet_for: timedelta | None = None  # repeats are logged only for this long


@dataclass(frozen=True)
class Recovery:
    """A service whose alerted problem is gone: announced once, then forgotten."""

    service: ServiceName
    problem: str  # what was wrong, as alerted
    broken_since: datetime
    recovered_at: datetime
    checks: int  # checks that found the problem
    fixed_by: str  # what fixed it, in words
    trigger: str
    fingerprint: str = ""
    mode: str = "enforce"


@dataclass(frozen=True)
class Incident:
    """Everything an alert says about one drift on one service."""

    service: ServiceName
    drift: Drift
    action: Action
    detected_at: datetime
    trigger: str  # "audit event" or "tick"
    change: Change | None = None  # who did it; None when not (yet) known
    attribution: str = ""  # how `change` was found, or why it is unknown
    probe: Probe | None = None
    error: str = ""  # why the restore failed, when it did
    timings: Mapping[str, float] = field(default_factory=dict)  # step -> seconds
    mode: str = "enforce"
    # What kind of problem this is; equal fingerprints on one service are one
    # problem, alerted once (watchdog.incidents).
    fingerprint: str = ""
    escalation: Escalation | None = None  # this restore is part of a fight
    suppressed: bool = False  # a repeat: logged, not sent to any channel
    repeat: str = ""  # e.g. "failing for 37 min, 38 checks"; "" the first time
