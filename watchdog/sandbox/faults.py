"""Faults and latency the sandbox can be told to inject.

Tests, the demo and the benchmarks need the unhappy paths of the real APIs (an
unavailable backend, a denied call, a write that loses an etag race, an org policy
that forbids `allUsers`, an audit sink that loses entries, entries that are late to
become queryable) on demand and deterministically. Each fault is armed here, through
the Python API or the sandbox's HTTP control endpoint, and consumed by the gRPC
handlers at the moment the real API would produce it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

ORG_POLICY_CONSTRAINT = "constraints/iam.allowedPolicyMemberDomains"
ORG_POLICY_MESSAGE = (
    "One or more users named in the policy do not belong to a permitted customer,"
    "  perhaps due to an organization policy."
)
# Members that domain restricted sharing refuses: they belong to no customer.
PUBLIC_MEMBERS = frozenset({"allUsers", "allAuthenticatedUsers"})

RPC_METHODS = (
    "GetService",
    "GetIamPolicy",
    "SetIamPolicy",
    "WriteLogEntries",
    "ListLogEntries",
)

_DEFAULT_MESSAGES = {
    grpc.StatusCode.UNAVAILABLE: "The service is currently unavailable.",
    grpc.StatusCode.PERMISSION_DENIED: (
        "Permission 'run.services.setIamPolicy' denied on resource '{resource}'"
        " (or it may not exist)."
    ),
    grpc.StatusCode.ABORTED: (
        "There were concurrent policy changes. Please retry the whole "
        "read-modify-write with exponential backoff."
    ),
    grpc.StatusCode.DEADLINE_EXCEEDED: (
        "Deadline expired before operation could complete."
    ),
    grpc.StatusCode.INTERNAL: "Internal error encountered.",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "Quota exceeded for quota metric 'Requests'.",
}


def method_key(method: str) -> str:
    """`SetIamPolicy` from any spelling: short, `Service/Method` or dotted."""
    short = method.rsplit("/", 1)[-1].rsplit(".", 1)[-1]
    if short not in RPC_METHODS:
        raise ValueError(
            f"{method!r} is not a sandbox RPC method; expected one of "
            f"{', '.join(RPC_METHODS)}"
        )
    return short


def status_code(name: str | int | grpc.StatusCode) -> grpc.StatusCode:
    """A gRPC status code from its name (`UNAVAILABLE`) or number (14)."""
    if isinstance(name, grpc.StatusCode):
        return name
    for code in grpc.StatusCode:
        if name in (code.name, code.value[0]) or str(name).upper() == code.name:
            return code
    raise ValueError(f"{name!r} is not a gRPC status code name or number")


def abort_with(context: grpc.ServicerContext, status: grpc.Status) -> NoReturn:
    """End the call with a (rich) status; grpc raises to unwind the handler."""
    context.abort_with_status(status)
    raise RuntimeError("abort_with_status returned")


def abort(
    context: grpc.ServicerContext, code: grpc.StatusCode, message: str
) -> NoReturn:
    """End the call with a status code and message."""
    context.abort(code, message)
    raise RuntimeError("abort returned")


@dataclass(frozen=True)
class StatusFault:
    """Fail a call with `code`; `org_policy` adds the domain-restriction detail."""

    code: grpc.StatusCode
    message: str = ""
    org_policy: bool = False
    member: str = "allUsers"  # the member the org policy refused

    def render_message(self, resource: str) -> str:
        if self.org_policy:
            return self.message or ORG_POLICY_MESSAGE
        template = self.message or _DEFAULT_MESSAGES.get(self.code, self.code.name)
        return template.replace("{resource}", resource)

    def to_status(self, resource: str, project: str) -> grpc.Status:
        """The rich gRPC status the real API would send, details included."""
        status = status_pb2.Status(
            code=self.code.value[0], message=self.render_message(resource)
        )
        if self.org_policy:
            violation = error_details_pb2.PreconditionFailure.Violation(
                type=ORG_POLICY_CONSTRAINT,
                subject=f"orgpolicy:projects/{project}?configvalue={self.member}",
                description=f"User {self.member} is not in permitted organization.",
            )
            detail = any_pb2.Any()
            detail.Pack(error_details_pb2.PreconditionFailure(violations=[violation]))
            status.details.append(detail)
        return rpc_status.to_status(status)


@dataclass(frozen=True)
class ConcurrentWrite:
    """Another writer's change, applied just before the next SetIamPolicy."""

    member: str = "user:concurrent-writer@example.com"
    role: str = "roles/run.viewer"
    principal: str = "concurrent-writer@example.com"
    service: str | None = None  # a short or full name; None: any service


class Faults:
    """The armed faults; every method is thread-safe.

    Counted faults fire the next N times and then disarm themselves; latency and
    logging delay stay until cleared.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._status: dict[str, list[tuple[StatusFault, int]]] = {}
        self._org_policy_left: int | None = 0  # None: until cleared
        self._latency: dict[str, float] = {}
        self._concurrent: list[tuple[ConcurrentWrite, int]] = []
        self._drop_forwarded = 0
        self._logging_delay = 0.0

    def fail(
        self,
        method: str,
        code: str | int | grpc.StatusCode,
        *,
        times: int = 1,
        message: str = "",
    ) -> None:
        """Make the next `times` calls of `method` fail with `code`."""
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}")
        fault = StatusFault(status_code(code), message)
        with self._lock:
            self._status.setdefault(method_key(method), []).append((fault, times))

    def block_public_members(self, *, times: int | None = None) -> None:
        """Refuse SetIamPolicy calls that grant allUsers or allAuthenticatedUsers.

        Like domain restricted sharing, only writes that add a public member fail
        (FAILED_PRECONDITION with a PreconditionFailure naming the constraint);
        removing `allUsers` still works. `times=None` keeps it until cleared.
        """
        with self._lock:
            self._org_policy_left = times

    def add_latency(self, method: str, seconds: float) -> None:
        """Delay every call of `method` by `seconds` before it is handled."""
        with self._lock:
            self._latency[method_key(method)] = max(0.0, seconds)

    def add_concurrent_writer(
        self, write: ConcurrentWrite | None = None, *, times: int = 1
    ) -> None:
        """Change the policy just before the next `times` SetIamPolicy calls."""
        with self._lock:
            self._concurrent.append((write or ConcurrentWrite(), times))

    def drop_forwarded(self, count: int) -> None:
        """Lose the next `count` entries on their way to the sink."""
        with self._lock:
            self._drop_forwarded += max(0, count)

    def delay_logging(self, seconds: float) -> None:
        """Keep new log entries out of ListLogEntries for `seconds`."""
        with self._lock:
            self._logging_delay = max(0.0, seconds)

    def clear(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._status.clear()
            self._org_policy_left = 0
            self._latency.clear()
            self._concurrent.clear()
            self._drop_forwarded = 0
            self._logging_delay = 0.0

    # Consumed by the handlers.

    def take_status(self, method: str) -> StatusFault | None:
        """The status fault for this call of `method`, if one is armed."""
        key = method_key(method)
        with self._lock:
            queue = self._status.get(key)
            if not queue:
                return None
            fault, left = queue[0]
            if left <= 1:
                queue.pop(0)
            else:
                queue[0] = (fault, left - 1)
            return fault

    def take_org_policy(self, members: set[str]) -> StatusFault | None:
        """The org-policy refusal for a write adding `members`, if armed."""
        refused = sorted(members & PUBLIC_MEMBERS)
        if not refused:
            return None
        with self._lock:
            if self._org_policy_left == 0:
                return None
            if self._org_policy_left is not None:
                self._org_policy_left -= 1
        return StatusFault(
            grpc.StatusCode.FAILED_PRECONDITION, org_policy=True, member=refused[0]
        )

    def latency(self, method: str) -> float:
        with self._lock:
            return self._latency.get(method_key(method), 0.0)

    def take_concurrent_write(self, service: str) -> ConcurrentWrite | None:
        """The concurrent write to apply before this SetIamPolicy on `service`."""
        with self._lock:
            for index, (write, left) in enumerate(self._concurrent):
                if write.service and write.service not in (
                    service,
                    service.rsplit("/", 1)[-1],
                ):
                    continue
                if left <= 1:
                    self._concurrent.pop(index)
                else:
                    self._concurrent[index] = (write, left - 1)
                return write
        return None

    def take_drop(self) -> bool:
        """True if this forwarded entry is to be lost."""
        with self._lock:
            if self._drop_forwarded <= 0:
                return False
            self._drop_forwarded -= 1
            return True

    def logging_delay(self) -> float:
        with self._lock:
            return self._logging_delay

    def snapshot(self) -> dict[str, Any]:
        """The armed faults as JSON-ready data, for the control endpoint."""
        with self._lock:
            return {
                "status": {
                    method: [
                        {"code": fault.code.name, "times": left} for fault, left in q
                    ]
                    for method, q in self._status.items()
                    if q
                },
                "org_policy": (
                    "until cleared"
                    if self._org_policy_left is None
                    else self._org_policy_left
                ),
                "latency": dict(self._latency),
                "concurrent_writer": sum(left for _, left in self._concurrent),
                "drop_forwarded": self._drop_forwarded,
                "logging_delay": self._logging_delay,
            }

    def apply(self, request: dict[str, Any]) -> None:
        """Arm a fault described as JSON (the HTTP control endpoint's body).

        `{"kind": "status", "method": "SetIamPolicy", "code": "UNAVAILABLE",
        "times": 2}`, `{"kind": "org_policy", "times": 1}` (omit times: until
        cleared), `{"kind": "latency", "method": "GetIamPolicy", "seconds": 0.5}`,
        `{"kind": "concurrent_writer", "times": 1, "service": "shop"}`,
        `{"kind": "drop_forwarded", "count": 1}`,
        `{"kind": "logging_delay", "seconds": 30}`, `{"kind": "clear"}`.
        Raises ValueError naming what is wrong.
        """
        kind = request.get("kind")
        if kind == "status":
            self.fail(
                str(request.get("method", "")),
                request.get("code", ""),
                times=int(request.get("times", 1)),
                message=str(request.get("message", "")),
            )
        elif kind == "org_policy":
            times = request.get("times")
            self.block_public_members(times=None if times is None else int(times))
        elif kind == "latency":
            self.add_latency(
                str(request.get("method", "")), float(request.get("seconds", 0))
            )
        elif kind == "concurrent_writer":
            write = ConcurrentWrite(service=request.get("service") or None)
            self.add_concurrent_writer(write, times=int(request.get("times", 1)))
        elif kind == "drop_forwarded":
            self.drop_forwarded(int(request.get("count", 1)))
        elif kind == "logging_delay":
            self.delay_logging(float(request.get("seconds", 0)))
        elif kind == "clear":
            self.clear()
        else:
            raise ValueError(
                f"fault kind {kind!r} is not one of status, org_policy, latency, "
                "concurrent_writer, drop_forwarded, logging_delay, clear"
            )
