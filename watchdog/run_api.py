"""The Cloud Run Admin API gateway: a service's URL and its IAM policy, with etags.

This is the only module that imports `google-cloud-run`. It converts between the
google.iam.v1 Policy proto and the project's `Policy` value without losing anything
the watchdog must write back (version, conditions, audit configs, `deleted:` members,
a role split over several bindings), always reads at policy version 3 (PITFALLS 4),
and sends back exactly the etag it was given (PITFALLS 3).

Errors leave as `watchdog.errors` types: transient statuses are retried here a few
times within a bounded deadline and then become `RetryableError`; ABORTED becomes
`EtagConflict` without a retry here, because only the caller can re-read and decide
again; the rest are permanent and say which service and what was refused.
"""

from __future__ import annotations

import logging
from typing import Any

from google.api_core import exceptions
from google.api_core.retry import Retry
from google.iam.v1 import iam_policy_pb2, options_pb2, policy_pb2
from google.rpc import error_details_pb2
from google.type import expr_pb2

from watchdog.api_calls import (
    TRANSIENT,
    LazyClient,
    bounded_retry,
    last_error,
    log_retry,
    status_text,
)
from watchdog.errors import (
    ConfigError,
    EtagConflict,
    PermanentError,
    PermissionDenied,
    PolicyRejected,
    RetryableError,
    ServiceNotFound,
    WatchdogError,
)
from watchdog.model import (
    AuditConfig,
    AuditLogConfig,
    Binding,
    Condition,
    Policy,
    ServiceInfo,
    ServiceName,
)

log = logging.getLogger(__name__)

POLICY_VERSION = 3
# Transient failures: retried here, a few times, inside one bounded deadline, so a
# tick still ends well inside its minute (PITFALLS 13).
MAX_ATTEMPTS = 4
RETRY_DEADLINE = 20.0
RETRY_INITIAL_DELAY = 0.25
RETRY_MAXIMUM_DELAY = 4.0


def policy_from_proto(proto: policy_pb2.Policy) -> Policy:
    """The project's Policy from a google.iam.v1.Policy, losing nothing."""
    return Policy(
        bindings=tuple(
            Binding(
                role=binding.role,
                members=tuple(binding.members),
                condition=(
                    Condition(
                        expression=binding.condition.expression,
                        title=binding.condition.title,
                        description=binding.condition.description,
                    )
                    if binding.HasField("condition")
                    else None
                ),
            )
            for binding in proto.bindings
        ),
        etag=bytes(proto.etag),
        version=proto.version,
        audit_configs=tuple(
            AuditConfig(
                service=config.service,
                audit_log_configs=tuple(
                    AuditLogConfig(
                        log_type=log_config.log_type,
                        exempted_members=tuple(log_config.exempted_members),
                    )
                    for log_config in config.audit_log_configs
                ),
            )
            for config in proto.audit_configs
        ),
    )


def policy_to_proto(policy: Policy) -> policy_pb2.Policy:
    """The google.iam.v1.Policy that states exactly the project's Policy."""
    proto = policy_pb2.Policy(version=policy.version, etag=policy.etag)
    for binding in policy.bindings:
        message = proto.bindings.add(role=binding.role, members=binding.members)
        if binding.condition is not None:
            message.condition.CopyFrom(
                expr_pb2.Expr(
                    expression=binding.condition.expression,
                    title=binding.condition.title,
                    description=binding.condition.description,
                )
            )
    for config in policy.audit_configs:
        proto.audit_configs.add(
            service=config.service,
            audit_log_configs=[
                policy_pb2.AuditLogConfig(
                    log_type=log_config.log_type,
                    exempted_members=log_config.exempted_members,
                )
                for log_config in config.audit_log_configs
            ],
        )
    return proto


def _retry() -> Retry:
    return bounded_retry(
        attempts=MAX_ATTEMPTS,
        deadline=RETRY_DEADLINE,
        initial=RETRY_INITIAL_DELAY,
        maximum=RETRY_MAXIMUM_DELAY,
        on_retry=log_retry(log, "Cloud Run Admin API", MAX_ATTEMPTS),
    )


def constraint_violations(error: exceptions.GoogleAPICallError) -> list[str]:
    """The precondition and request violations a rich error status carries."""
    found: list[str] = []
    for detail in error.details or ():
        if isinstance(detail, error_details_pb2.PreconditionFailure):
            for violation in detail.violations:
                text = violation.type
                if violation.description:
                    text += f" ({violation.description})"
                found.append(text)
        elif isinstance(detail, error_details_pb2.BadRequest):
            for field in detail.field_violations:
                found.append(f"{field.field}: {field.description}")
    return found


def translate_error(
    error: exceptions.GoogleAPIError, name: ServiceName, action: str
) -> WatchdogError:
    """The watchdog error for a client-library error on `action` of `name`."""
    if isinstance(error, exceptions.RetryError):
        return RetryableError(
            f"{action} {name}: the Cloud Run Admin API kept failing for "
            f"{RETRY_DEADLINE:.0f} s; last error: {last_error(error)}"
        )
    if isinstance(error, TRANSIENT):
        return RetryableError(
            f"{action} {name}: still failing after {MAX_ATTEMPTS} attempts: "
            f"{status_text(error)}"
        )
    if isinstance(error, exceptions.Aborted):
        return EtagConflict(
            f"{action} {name}: the policy changed since it was read (etag no "
            f"longer current); read it again and decide again. {status_text(error)}"
        )
    if isinstance(error, exceptions.PermissionDenied | exceptions.Unauthenticated):
        return PermissionDenied(
            f"{action} {name}: the watchdog's identity was refused; it needs "
            "run.services.get, run.services.getIamPolicy and "
            f"run.services.setIamPolicy on the service. {status_text(error)}"
        )
    if isinstance(error, exceptions.NotFound):
        return ServiceNotFound(
            f"{action} {name}: no such service; check WATCHDOG_SERVICES. "
            f"{status_text(error)}"
        )
    if isinstance(error, exceptions.FailedPrecondition | exceptions.InvalidArgument):
        violations = constraint_violations(error)
        because = f" Violations: {'; '.join(violations)}." if violations else ""
        return PolicyRejected(
            f"{action} {name}: Cloud Run refused the policy: "
            f"{status_text(error)}{because}"
        )
    return PermanentError(f"{action} {name}: unexpected API error {status_text(error)}")


class RunApi(LazyClient):
    """Reads services and reads/writes their IAM policies.

    With `endpoint` ("host:port") it talks plaintext gRPC with no credentials to the
    sandbox or a compatible fake; without, to Google with Application Default
    Credentials. The client is built on first use and shared by threads.
    """

    def _build_client(self) -> Any:
        from google.cloud import run_v2

        if self.endpoint:
            import grpc
            from google.cloud.run_v2.services.services.transports import (
                ServicesGrpcTransport,
            )

            channel = grpc.insecure_channel(self.endpoint)
            return run_v2.ServicesClient(
                transport=ServicesGrpcTransport(channel=channel)
            )
        import google.auth.exceptions

        try:
            return run_v2.ServicesClient()
        except google.auth.exceptions.DefaultCredentialsError as error:
            raise ConfigError(
                "no Application Default Credentials for the Cloud Run Admin API; "
                "run as a service account, or set WATCHDOG_RUN_ENDPOINT to a sandbox"
            ) from error

    def get_service(self, name: ServiceName) -> ServiceInfo:
        """The service's URL and whether its invoker IAM check is disabled."""
        try:
            service = self.client().get_service(
                name=name.full, retry=_retry(), timeout=self.timeout
            )
        except exceptions.GoogleAPIError as error:
            raise translate_error(error, name, "reading service") from error
        uri = service.uri or (service.urls[0] if service.urls else "")
        return ServiceInfo(
            name=name, uri=uri, invoker_iam_disabled=service.invoker_iam_disabled
        )

    def get_ingress(self, name: ServiceName) -> str:
        """Who may reach the service's URL: `INGRESS_TRAFFIC_INTERNAL_ONLY` etc."""
        from google.cloud import run_v2

        try:
            service = self.client().get_service(
                name=name.full, retry=_retry(), timeout=self.timeout
            )
        except exceptions.GoogleAPIError as error:
            raise translate_error(error, name, "reading service") from error
        return str(run_v2.IngressTraffic(service.ingress).name)

    def test_permissions(
        self, name: ServiceName, permissions: tuple[str, ...]
    ) -> frozenset[str]:
        """The subset of `permissions` that the caller (not the function) holds."""
        request = iam_policy_pb2.TestIamPermissionsRequest(
            resource=name.full, permissions=permissions
        )
        try:
            response = self.client().test_iam_permissions(
                request=request, retry=_retry(), timeout=self.timeout
            )
        except exceptions.GoogleAPIError as error:
            raise translate_error(error, name, "testing permissions on") from error
        return frozenset(response.permissions)

    def get_policy(self, name: ServiceName) -> Policy:
        """The service's IAM policy, read at version 3 so conditions are kept."""
        request = iam_policy_pb2.GetIamPolicyRequest(
            resource=name.full,
            options=options_pb2.GetPolicyOptions(
                requested_policy_version=POLICY_VERSION
            ),
        )
        try:
            proto = self.client().get_iam_policy(
                request=request, retry=_retry(), timeout=self.timeout
            )
        except exceptions.GoogleAPIError as error:
            raise translate_error(error, name, "reading the IAM policy of") from error
        return policy_from_proto(proto)

    def set_policy(self, name: ServiceName, policy: Policy) -> Policy:
        """Write exactly `policy`, with its etag; return what the API stored.

        Raises EtagConflict when the policy changed since `policy` was read. A
        transient failure is retried with the same etag: if the first attempt did
        land, the retry gets ABORTED and the caller re-reads, so nothing is lost.
        """
        request = iam_policy_pb2.SetIamPolicyRequest(
            resource=name.full, policy=policy_to_proto(policy)
        )
        try:
            proto = self.client().set_iam_policy(
                request=request, retry=_retry(), timeout=self.timeout
            )
        except exceptions.GoogleAPIError as error:
            raise translate_error(error, name, "writing the IAM policy of") from error
        return policy_from_proto(proto)
