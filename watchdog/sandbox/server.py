"""The sandbox as one object: both gRPC APIs, the front end, the audit trail, faults.

Tests start it in-process; `python -m watchdog.sandbox` runs the same object as a
process for the demo and the benchmarks. Each API gets its own gRPC server and port,
as each has its own host in Google Cloud, so a client wired to the wrong endpoint
fails loudly (UNIMPLEMENTED) instead of working by accident.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format

from watchdog.model import ServiceName
from watchdog.sandbox.audit_trail import Caller, EntryFactory, Forwarder
from watchdog.sandbox.faults import Faults
from watchdog.sandbox.frontend import Frontend
from watchdog.sandbox.logging_service import LoggingServicer, LogStore
from watchdog.sandbox.run_service import RpcFailure, RunServices

log = logging.getLogger(__name__)

DEFAULT_SERVICES = ("public-api", "shop")

_Part = TypeVar("_Part")
_HTTP_STATUS = {
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAVAILABLE: 503,
}


def _role_members(value: Any) -> dict[str, list[str]]:
    """`{role: [members]}` from a control request; ValueError otherwise."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(members, list) for members in value.values()
    ):
        raise ValueError('expected {"ROLE": ["MEMBER", ...]}')
    return {str(role): [str(m) for m in members] for role, members in value.items()}


class _GrpcServer:
    """One gRPC server on a loopback port chosen by the OS."""

    def __init__(self, handler: grpc.GenericRpcHandler, host: str, workers: int):
        self._executor = ThreadPoolExecutor(max_workers=workers)
        self._server = grpc.server(self._executor, options=[("grpc.so_reuseport", 0)])
        self._server.add_generic_rpc_handlers((handler,))
        self.port = int(self._server.add_insecure_port(f"{host}:0"))
        self.endpoint = f"{host}:{self.port}"
        self._server.start()

    def stop(self) -> None:
        self._server.stop(grace=0.2).wait(2.0)
        self._executor.shutdown(wait=False, cancel_futures=True)


class Sandbox:
    """Local stand-ins for the Google APIs the watchdog uses; see the package doc."""

    def __init__(
        self,
        project: str = "demo-project",
        location: str = "europe-west1",
        services: Iterable[str] = DEFAULT_SERVICES,
        *,
        default_principal: str | None = None,
        sink_url: str | None = None,
        pubsub_emulator_host: str | None = None,
        topic: str | None = None,
        subscription: str = "audit-sink",
        policy_delta: bool = False,
        host: str = "127.0.0.1",
        workers: int = 16,
    ) -> None:
        self.project = project
        self.location = location
        self.service_names = tuple(services)
        self.default_principal = (
            default_principal or f"watchdog@{project}.iam.gserviceaccount.com"
        )
        self.host = host
        self._workers = workers
        self._initial_sink_url = sink_url
        self.faults = Faults()
        self.store = LogStore(self.faults)
        self.entry_factory = EntryFactory(project, location)
        self.forwarder = Forwarder(
            project,
            self.faults,
            sink_url=sink_url,
            pubsub_emulator_host=pubsub_emulator_host,
            topic=topic,
            subscription=subscription,
        )
        self.run = RunServices(
            project,
            location,
            self.faults,
            self.entry_factory,
            self._record,
            default_principal=self.default_principal,
            policy_delta=policy_delta,
        )
        self._pubsub = (pubsub_emulator_host, topic)
        self._frontend: Frontend | None = None
        self._run_server: _GrpcServer | None = None
        self._logging_server: _GrpcServer | None = None

    # Lifecycle.

    def start(self) -> Sandbox:
        """Bind every server on loopback and start serving; returns self."""
        if self._frontend is not None:
            raise RuntimeError("the sandbox is already started")
        self._frontend = Frontend(self.run, self._control, self.host)
        for service in self.service_names:
            self.run.add(service, self._frontend.service_uri(service))
        self._run_server = _GrpcServer(self.run.handler(), self.host, self._workers)
        logging_api = LoggingServicer(self.store, self.faults)
        self._logging_server = _GrpcServer(
            logging_api.handler(), self.host, self._workers
        )
        self._frontend.start()
        self.forwarder.start()
        log.info("sandbox started", extra={"fields": self.endpoints()})
        return self

    def stop(self) -> None:
        """Stop every server and thread; safe to call twice."""
        for server in (self._run_server, self._logging_server):
            if server is not None:
                server.stop()
        self._run_server = self._logging_server = None
        if self._frontend is not None:
            self._frontend.stop()
            self._frontend = None
        self.forwarder.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    # Where things are.

    @property
    def run_endpoint(self) -> str:
        """`host:port` of the Cloud Run Admin API (plaintext gRPC)."""
        return self._started(self._run_server).endpoint

    @property
    def logging_endpoint(self) -> str:
        """`host:port` of the Cloud Logging API (plaintext gRPC)."""
        return self._started(self._logging_server).endpoint

    @property
    def frontend_url(self) -> str:
        return self._started(self._frontend).base_url

    @property
    def control_url(self) -> str:
        return f"{self.frontend_url}/control"

    @property
    def services(self) -> list[ServiceName]:
        return self.run.names()

    def service_name(self, service: str) -> ServiceName:
        """The full name of a sandbox service given its short name."""
        return self.run.get(service).name

    def uri(self, service: str | ServiceName) -> str:
        return self.run.get(service).uri

    def endpoints(self) -> dict[str, Any]:
        """What a separate process needs to reach this sandbox (the ready line)."""
        return {
            "project": self.project,
            "location": self.location,
            "run_endpoint": self.run_endpoint,
            "logging_endpoint": self.logging_endpoint,
            "frontend": self.frontend_url,
            "control": self.control_url,
            "default_principal": self.default_principal,
            "services": [
                {"name": name.full, "service": name.service, "uri": self.uri(name)}
                for name in self.services
            ],
        }

    # Helpers for tests and the demo.

    def policy(self, service: str | ServiceName) -> Any:
        """A copy of the current google.iam.v1.Policy of a service."""
        return self.run.policy(service)

    def is_public(self, service: str | ServiceName) -> bool:
        """Would the front end let anyone in right now?"""
        return self.run.is_open(service)

    def write_policy(
        self,
        service: str | ServiceName,
        policy: Any,
        *,
        principal: str | None = None,
        delegation: tuple[str, ...] = (),
    ) -> Any:
        """A SetIamPolicy by `principal`, bypassing gRPC and per-call faults.

        Etag and version rules, the org-policy fault and the audit entry apply as
        for a call over gRPC. Raises RpcFailure when the API would refuse it.
        """
        caller = Caller(principal or self.default_principal, delegation)
        return self.run.write_policy(service, policy, caller)

    def change_members(
        self,
        service: str | ServiceName,
        *,
        add: Mapping[str, Iterable[str]] | None = None,
        remove: Mapping[str, Iterable[str]] | None = None,
        principal: str | None = None,
        delegation: tuple[str, ...] = (),
        user_agent: str = "",
    ) -> Any:
        """Someone's read-modify-write of the unconditional bindings, `{role: members}`.

        How the demo and benchmarks act as a person (say, an intern removing
        `allUsers`). Raises RpcFailure when the API would refuse the result.
        """
        policy = self.run.policy(service)
        for role, members in (remove or {}).items():
            removed = set(members)
            for binding in policy.bindings:
                if binding.role == role and not binding.HasField("condition"):
                    kept = [m for m in binding.members if m not in removed]
                    del binding.members[:]
                    binding.members.extend(kept)
        for role, members in (add or {}).items():
            target = next(
                (
                    binding
                    for binding in policy.bindings
                    if binding.role == role and not binding.HasField("condition")
                ),
                None,
            )
            if target is None:
                target = policy.bindings.add(role=role)
            target.members.extend(m for m in members if m not in target.members)
        caller = Caller(
            principal or self.default_principal, delegation, user_agent=user_agent
        )
        return self.run.write_policy(service, policy, caller)

    def set_invoker_iam_disabled(
        self,
        service: str | ServiceName,
        disabled: bool,
        *,
        principal: str | None = None,
    ) -> None:
        """Turn the invoker IAM check off or on; writes an UpdateService entry."""
        caller = Caller(principal or self.default_principal)
        self.run.set_invoker_iam_disabled(service, disabled, caller)

    def set_sink_url(self, url: str | None) -> None:
        """Forward later audit entries to `url` (None: forward nothing)."""
        self.forwarder.set_sink_url(url)

    def entries(self) -> list[dict[str, Any]]:
        """Every audit entry written so far, JSON form, oldest first."""
        return self.store.entries()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every entry written so far has been forwarded (or dropped)."""
        return self.forwarder.flush(timeout)

    def reset(self) -> None:
        """Back to the initial state: public services, no faults, no entries."""
        self.faults.clear()
        self.forwarder.flush(5.0)
        self.run.reset()
        self.store.clear()
        self.forwarder.set_sink_url(self._initial_sink_url)

    def state(self) -> dict[str, Any]:
        """Services, policies, faults and counters, as JSON-ready data."""
        services = {}
        for name in self.services:
            state = self.run.get(name)
            services[name.full] = {
                "uri": state.uri,
                "invoker_iam_disabled": state.invoker_iam_disabled,
                "public": self.run.is_open(name),
                "policy": json_format.MessageToDict(self.run.policy(name)),
            }
        return {
            **self.endpoints(),
            "services": services,
            "faults": self.faults.snapshot(),
            "entries": len(self.store.entries()),
            "forwarded": self.forwarder.forwarded,
            "dropped": self.forwarder.dropped,
            "forward_failures": self.forwarder.failed,
            "sink_url": self.forwarder.sink_url,
        }

    def _record(self, entry: dict[str, Any]) -> None:
        """An audit entry goes to Logging and, like a log sink, on to Pub/Sub."""
        self.store.write_json(entry)
        self.forwarder.submit(entry)

    def _control(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """The HTTP control endpoint's routes."""
        route = (method, path.rstrip("/"))
        payload = body if isinstance(body, dict) else {}
        try:
            if route == ("GET", "/control/state"):
                return 200, self.state()
            if route == ("GET", "/control/entries"):
                return 200, self.entries()
            if route == ("POST", "/control/fault"):
                self.faults.apply(payload)
                return 200, self.faults.snapshot()
            if route == ("POST", "/control/invoker-check"):
                self.set_invoker_iam_disabled(
                    str(payload.get("service", "")),
                    bool(payload.get("disabled", True)),
                    principal=payload.get("principal") or None,
                )
                return 200, {"ok": True}
            if route == ("POST", "/control/iam"):
                policy = self.change_members(
                    str(payload.get("service", "")),
                    add=_role_members(payload.get("add")),
                    remove=_role_members(payload.get("remove")),
                    principal=payload.get("principal") or None,
                    delegation=tuple(payload.get("delegation") or ()),
                    user_agent=str(payload.get("user_agent", "")),
                )
                return 200, json_format.MessageToDict(policy)
            if route == ("POST", "/control/sink"):
                self.set_sink_url(payload.get("url") or None)
                return 200, {"ok": True}
            if route == ("POST", "/control/flush"):
                return 200, {"flushed": self.flush(float(payload.get("timeout", 10)))}
            if route == ("POST", "/control/reset"):
                self.reset()
                return 200, {"ok": True}
        except (ValueError, TypeError) as error:
            return 400, {"error": str(error)}
        except RpcFailure as failure:
            status = _HTTP_STATUS.get(failure.code, 400)
            return status, {"error": failure.message, "code": failure.code.name}
        return 404, {
            "error": f"no control route {method} {path}",
            "routes": [
                "GET /control/state",
                "GET /control/entries",
                "POST /control/fault",
                "POST /control/invoker-check",
                "POST /control/iam",
                "POST /control/sink",
                "POST /control/flush",
                "POST /control/reset",
            ],
        }

    @staticmethod
    def _started(part: _Part | None) -> _Part:
        if part is None:
            raise RuntimeError("the sandbox is not started; call start() first")
        return part
