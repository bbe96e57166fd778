"""A Cloud Run Admin API v2 subset over gRPC: GetService and the IAM policy calls.

The GAPIC package ships no servicer base classes, so the handlers are registered as
a generic handler for `google.cloud.run.v2.Services`. The IAM semantics follow the
real API where the watchdog depends on them: a new etag on every successful write,
ABORTED for a stale etag, a blind overwrite for an empty one, INVALID_ARGUMENT for
conditional bindings at a policy version below 3, and an update mask that defaults
to `bindings, etag` (so audit configs are only written when the mask names them).
Every IAM write, successful or refused by the API itself, leaves an audit entry.

TestIamPermissions does not model who holds what: every caller holds every
`run.*` permission on every service, except those a test withholds on a service.
"""

from __future__ import annotations

import copy
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.cloud import run_v2
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.protobuf import json_format

from watchdog.model import INVOKER_ROLE, ServiceName
from watchdog.sandbox.audit_trail import (
    Caller,
    EntryFactory,
    Failure,
    caller_from_metadata,
    policy_delta,
)
from watchdog.sandbox.faults import Faults, StatusFault, abort, abort_with

log = logging.getLogger(__name__)

SERVICE = "google.cloud.run.v2.Services"
SET_IAM_POLICY = "google.cloud.run.v2.Services.SetIamPolicy"
UPDATE_SERVICE = "google.cloud.run.v2.Services.UpdateService"
PUBLIC_MEMBER = "allUsers"
_RUN_TYPES = "type.googleapis.com/google.cloud.run.v2"
DEVELOPER_BINDING = ("roles/run.developer", "user:dev@example.com")

# Failures that happen in front of the service (load balancer, quota): the real API
# writes no audit entry for them, so the sandbox writes none either.
_UNAUDITED = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


class RpcFailure(Exception):
    """A call the sandbox refuses, with the status the real API would send."""

    def __init__(
        self, code: grpc.StatusCode, message: str, status: grpc.Status | None = None
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.status = status


@dataclass
class ServiceState:
    name: ServiceName
    uri: str
    invoker_iam_disabled: bool
    policy: Any  # google.iam.v1.Policy
    # Cloud Run's default; a gen2 function's service is usually internal only.
    ingress: int = run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL


def initial_policy() -> Any:
    """A public service's policy, with one other binding that must stay untouched."""
    return policy_pb2.Policy(
        version=1,
        etag=new_etag(b""),
        bindings=[
            policy_pb2.Binding(
                role=DEVELOPER_BINDING[0], members=[DEVELOPER_BINDING[1]]
            ),
            policy_pb2.Binding(role=INVOKER_ROLE, members=[PUBLIC_MEMBER]),
        ],
    )


def new_etag(previous: bytes) -> bytes:
    """A fresh etag, never equal to the previous one (the real ones are 8 bytes)."""
    while (etag := b"\x07" + secrets.token_bytes(7)) == previous:
        pass
    return etag


def lets_everyone_in(policy: Any) -> bool:
    """True if allUsers holds the invoker role in an unconditional binding."""
    return any(
        binding.role == INVOKER_ROLE
        and PUBLIC_MEMBER in binding.members
        and not binding.HasField("condition")
        for binding in policy.bindings
    )


def _members(policy: Any) -> set[str]:
    return {member for binding in policy.bindings for member in binding.members}


def _has_conditions(policy: Any) -> bool:
    return any(binding.HasField("condition") for binding in policy.bindings)


def _policy_json(policy: Any) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.iam.v1.Policy",
        **json_format.MessageToDict(policy),
    }


class RunServices:
    """The services, their policies, and the gRPC handlers over them; thread-safe."""

    def __init__(
        self,
        project: str,
        location: str,
        faults: Faults,
        entries: EntryFactory,
        record: Callable[[dict[str, Any]], None],
        *,
        default_principal: str,
        policy_delta: bool = False,
    ) -> None:
        self.project = project
        self.location = location
        self.faults = faults
        self.default_principal = default_principal
        self._entries = entries
        self._record = record
        self._policy_delta = policy_delta
        self._lock = threading.RLock()
        self._services: dict[str, ServiceState] = {}
        self._withheld: dict[str, set[str]] = {}  # full name -> permissions

    # The Python API, also used by the HTTP control endpoint and the front end.

    def add(self, service: str, uri: str) -> ServiceState:
        """Create a public service named `service` (short name) served at `uri`."""
        name = ServiceName(self.project, self.location, service)
        state = ServiceState(name, uri, False, initial_policy())
        with self._lock:
            self._services[name.full] = state
        return state

    def reset(self) -> None:
        """Make every service public again, with its initial policy."""
        with self._lock:
            self._withheld.clear()
            for state in self._services.values():
                state.invoker_iam_disabled = False
                state.policy = initial_policy()

    def names(self) -> list[ServiceName]:
        with self._lock:
            return [state.name for state in self._services.values()]

    def find(self, name: str | ServiceName) -> ServiceState | None:
        """A service by full name, ServiceName or short name."""
        key = name.full if isinstance(name, ServiceName) else name
        with self._lock:
            if key in self._services:
                return self._services[key]
            for state in self._services.values():
                if state.name.service == key:
                    return state
        return None

    def get(self, name: str | ServiceName) -> ServiceState:
        if (state := self.find(name)) is None:
            raise RpcFailure(grpc.StatusCode.NOT_FOUND, self._not_found(str(name)))
        return state

    def policy(self, name: str | ServiceName) -> Any:
        """A copy of the service's current policy."""
        with self._lock:
            return copy.deepcopy(self.get(name).policy)

    def is_open(self, name: str | ServiceName) -> bool:
        """Would the front end let an anonymous request in right now?"""
        with self._lock:
            state = self.get(name)
            return state.invoker_iam_disabled or lets_everyone_in(state.policy)

    def write_policy(
        self,
        name: str | ServiceName,
        policy: Any,
        caller: Caller | None = None,
        *,
        update_mask: Sequence[str] = (),
        through_rpc: bool = False,
    ) -> Any:
        """Apply a SetIamPolicy with the real API's rules; return the new policy.

        `through_rpc` applies the per-call faults (a status fault, a concurrent
        writer); the org-policy constraint applies to every write. Raises
        RpcFailure, after writing the failed call's audit entry.
        """
        caller = caller or Caller(self.default_principal)
        state = self.get(name)
        request = iam_policy_pb2.SetIamPolicyRequest(
            resource=state.name.full, policy=policy
        )
        if update_mask:
            request.update_mask.paths.extend(update_mask)
        with self._lock:
            try:
                return self._apply_policy(state, request, caller, through_rpc)
            except RpcFailure as failure:
                if failure.code not in _UNAUDITED:
                    self._audit_set(state, request, caller, None, failure)
                raise

    def set_ingress(self, name: str | ServiceName, ingress: int) -> None:
        """Set who may reach the service's URL at all (not audited here)."""
        with self._lock:
            self.get(name).ingress = ingress

    def withhold_permissions(
        self, name: str | ServiceName, permissions: Sequence[str]
    ) -> None:
        """Make TestIamPermissions on the service leave out `permissions`."""
        with self._lock:
            full = self.get(name).name.full
            self._withheld.setdefault(full, set()).update(permissions)

    def set_invoker_iam_disabled(
        self, name: str | ServiceName, disabled: bool, caller: Caller | None = None
    ) -> None:
        """Turn the invoker IAM check off (public without allUsers) or back on."""
        caller = caller or Caller(self.default_principal)
        with self._lock:
            state = self.get(name)
            state.invoker_iam_disabled = disabled
            service = {"name": state.name.full, "invokerIamDisabled": disabled}
            entry = self._entries.build(
                method=UPDATE_SERVICE,
                resource_name=state.name.full,
                permission="run.services.update",
                caller=caller,
                request={
                    "@type": f"{_RUN_TYPES}.UpdateServiceRequest",
                    "service": service,
                },
                response={
                    "@type": f"{_RUN_TYPES}.Service",
                    **service,
                    "uri": state.uri,
                },
            )
        self._record(entry)

    def _apply_policy(
        self, state: ServiceState, request: Any, caller: Caller, through_rpc: bool
    ) -> Any:
        policy = request.policy
        if through_rpc:
            if fault := self.faults.take_status("SetIamPolicy"):
                raise self._failure(fault, state)
            if write := self.faults.take_concurrent_write(state.name.full):
                self._write_concurrently(
                    state, write.role, write.member, write.principal
                )
        # Like domain restricted sharing, only members being added are checked.
        added = _members(policy) - _members(state.policy)
        if fault := self.faults.take_org_policy(added):
            raise self._failure(fault, state)
        if policy.version not in (0, 1, 3):
            raise RpcFailure(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Policy version {policy.version} is not valid; use 1 or 3.",
            )
        if _has_conditions(policy) and policy.version < 3:
            raise RpcFailure(
                grpc.StatusCode.INVALID_ARGUMENT,
                "A policy with conditional role bindings must be written with "
                f"version 3; got version {policy.version} for {state.name.full}.",
            )
        if policy.etag and policy.etag != state.policy.etag:
            raise RpcFailure(
                grpc.StatusCode.ABORTED,
                "There were concurrent policy changes. Please retry the whole "
                "read-modify-write with exponential backoff.",
            )
        paths = set(request.update_mask.paths) or {"bindings", "etag"}
        updated = policy_pb2.Policy()
        updated.CopyFrom(state.policy)
        if "bindings" in paths:
            del updated.bindings[:]
            # Like IAM, a binding left without members is dropped.
            updated.bindings.extend(b for b in policy.bindings if b.members)
            updated.version = 3 if _has_conditions(updated) else (policy.version or 1)
        if "audit_configs" in paths or "auditConfigs" in paths:
            del updated.audit_configs[:]
            updated.audit_configs.extend(policy.audit_configs)
        updated.etag = new_etag(state.policy.etag)
        before = state.policy
        state.policy = updated
        self._audit_set(state, request, caller, before, None)
        return copy.deepcopy(updated)

    def _write_concurrently(
        self, state: ServiceState, role: str, member: str, principal: str
    ) -> None:
        """Another writer's read-modify-write, landing between our read and write."""
        policy = policy_pb2.Policy()
        policy.CopyFrom(state.policy)
        for binding in policy.bindings:
            if binding.role == role and not binding.HasField("condition"):
                if member not in binding.members:
                    binding.members.append(member)
                break
        else:
            policy.bindings.append(policy_pb2.Binding(role=role, members=[member]))
        request = iam_policy_pb2.SetIamPolicyRequest(
            resource=state.name.full, policy=policy
        )
        self._apply_policy(state, request, Caller(principal), through_rpc=False)
        log.info(
            "concurrent writer changed %s (fault)",
            state.name,
            extra={"fields": {"service": state.name.full, "member": member}},
        )

    def _failure(self, fault: StatusFault, state: ServiceState) -> RpcFailure:
        return RpcFailure(
            fault.code,
            fault.render_message(state.name.full),
            fault.to_status(state.name.full, self.project),
        )

    def _audit_set(
        self,
        state: ServiceState,
        request: Any,
        caller: Caller,
        before: Any,
        failure: RpcFailure | None,
    ) -> None:
        service_data = None
        if self._policy_delta and failure is None and before is not None:
            deltas = policy_delta(
                json_format.MessageToDict(before),
                json_format.MessageToDict(state.policy),
            )
            service_data = {
                "@type": "type.googleapis.com/google.iam.v1.logging.AuditData",
                "policyDelta": {"bindingDeltas": deltas},
            }
        entry = self._entries.build(
            method=SET_IAM_POLICY,
            resource_name=state.name.full,
            permission="run.services.setIamPolicy",
            caller=caller,
            request={
                "@type": "type.googleapis.com/google.iam.v1.SetIamPolicyRequest",
                **json_format.MessageToDict(request),
            },
            response=None if failure else _policy_json(state.policy),
            failure=(
                Failure(failure.code.value[0], failure.message) if failure else None
            ),
            service_data=service_data,
        )
        self._record(entry)

    def _not_found(self, name: str) -> str:
        try:
            parsed = ServiceName.parse(name)
        except ValueError:
            return f"Resource '{name}' of kind 'SERVICE' does not exist."
        return (
            f"Resource '{parsed.service}' of kind 'SERVICE' in region "
            f"'{parsed.location}' in project '{parsed.project}' does not exist."
        )

    # The gRPC side.

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "GetService": grpc.unary_unary_rpc_method_handler(
                    self.get_service,
                    request_deserializer=run_v2.GetServiceRequest.deserialize,
                    response_serializer=run_v2.Service.serialize,
                ),
                "GetIamPolicy": grpc.unary_unary_rpc_method_handler(
                    self.get_iam_policy,
                    request_deserializer=iam_policy_pb2.GetIamPolicyRequest.FromString,
                    response_serializer=policy_pb2.Policy.SerializeToString,
                ),
                "SetIamPolicy": grpc.unary_unary_rpc_method_handler(
                    self.set_iam_policy,
                    request_deserializer=iam_policy_pb2.SetIamPolicyRequest.FromString,
                    response_serializer=policy_pb2.Policy.SerializeToString,
                ),
                "TestIamPermissions": grpc.unary_unary_rpc_method_handler(
                    self.test_iam_permissions,
                    request_deserializer=(
                        iam_policy_pb2.TestIamPermissionsRequest.FromString
                    ),
                    response_serializer=(
                        iam_policy_pb2.TestIamPermissionsResponse.SerializeToString
                    ),
                ),
            },
        )

    def _caller(self, context: grpc.ServicerContext) -> Caller:
        return caller_from_metadata(
            context.invocation_metadata(), context.peer(), self.default_principal
        )

    def _enter(self, method: str, context: grpc.ServicerContext, name: str) -> None:
        """Latency and the status fault of a read call."""
        if delay := self.faults.latency(method):
            time.sleep(delay)
        if fault := self.faults.take_status(method):
            abort_with(context, fault.to_status(name, self.project))

    def get_service(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("GetService", context, request.name)
        if (state := self.find(request.name)) is None or "/" not in request.name:
            abort(context, grpc.StatusCode.NOT_FOUND, self._not_found(request.name))
        with self._lock:
            return run_v2.Service(
                name=state.name.full,
                uri=state.uri,
                urls=[state.uri],
                invoker_iam_disabled=state.invoker_iam_disabled,
                ingress=state.ingress,
            )

    def get_iam_policy(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._enter("GetIamPolicy", context, request.resource)
        if (
            state := self.find(request.resource)
        ) is None or "/" not in request.resource:
            abort(context, grpc.StatusCode.NOT_FOUND, self._not_found(request.resource))
        requested = request.options.requested_policy_version
        with self._lock:
            policy = copy.deepcopy(state.policy)
        if _has_conditions(policy) and requested < 3:
            abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"The policy of {state.name.full} has conditional role bindings; "
                f"request policy version 3 (requested {requested}).",
            )
        return policy

    def test_iam_permissions(self, request: Any, context: grpc.ServicerContext) -> Any:
        # Like the real API, a permission of another service is an error, and the
        # answer is the subset the caller holds (here: all but the withheld ones).
        if (
            state := self.find(request.resource)
        ) is None or "/" not in request.resource:
            abort(context, grpc.StatusCode.NOT_FOUND, self._not_found(request.resource))
        for permission in request.permissions:
            if not permission.startswith("run."):
                abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Permission {permission} is not valid for this resource.",
                )
        with self._lock:
            withheld = set(self._withheld.get(state.name.full, ()))
        return iam_policy_pb2.TestIamPermissionsResponse(
            permissions=[p for p in request.permissions if p not in withheld]
        )

    def set_iam_policy(self, request: Any, context: grpc.ServicerContext) -> Any:
        if delay := self.faults.latency("SetIamPolicy"):
            time.sleep(delay)
        if "/" not in request.resource:
            abort(context, grpc.StatusCode.NOT_FOUND, self._not_found(request.resource))
        try:
            return self.write_policy(
                request.resource,
                request.policy,
                self._caller(context),
                update_mask=list(request.update_mask.paths),
                through_rpc=True,
            )
        except RpcFailure as failure:
            if failure.status is not None:
                abort_with(context, failure.status)
            abort(context, failure.code, failure.message)
