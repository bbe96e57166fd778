"""The Cloud Run gateway against the sandbox, through the real run_v2 client."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures_sandbox import INTERN, PUBLIC_API, SHOP
from watchdog.errors import (
    ConfigError,
    EtagConflict,
    PermissionDenied,
    PolicyRejected,
    RetryableError,
    ServiceNotFound,
)
from watchdog.model import (
    INVOKER_ROLE,
    AuditConfig,
    AuditLogConfig,
    Binding,
    Condition,
    Policy,
    ServiceName,
)
from watchdog.run_api import RunApi, policy_from_proto, policy_to_proto
from watchdog.sandbox import Sandbox
from watchdog.sandbox.faults import ORG_POLICY_CONSTRAINT

DEVELOPER = Binding("roles/run.developer", ("user:dev@example.com",))
PUBLIC = Binding(INVOKER_ROLE, ("allUsers",))
EXPIRING = Condition(
    expression='request.time < timestamp("2030-01-01T00:00:00Z")',
    title="expires",
    description="until 2030",
)
GONE = ServiceName(PUBLIC_API.project, PUBLIC_API.location, "gone")

ROUND_TRIP_POLICIES = {
    "empty": Policy(),
    "etag-only": Policy(etag=b"ACAB"),
    "public": Policy(bindings=(DEVELOPER, PUBLIC), etag=b"\x07\x01", version=1),
    "conditional": Policy(
        bindings=(
            Binding(INVOKER_ROLE, ("allUsers",), EXPIRING),
            Binding(INVOKER_ROLE, ("user:a@example.com",), Condition("true")),
        ),
        etag=b"BwWWja0YfJA=",
        version=3,
    ),
    "deleted-member": Policy(
        bindings=(
            Binding(
                INVOKER_ROLE,
                (
                    "serviceAccount:frontend@example.iam.gserviceaccount.com",
                    "deleted:serviceAccount:old@example.iam.gserviceaccount.com"
                    "?uid=123456789012345678901",
                ),
            ),
        ),
        version=1,
    ),
    "same-role-twice": Policy(
        bindings=(
            Binding(INVOKER_ROLE, ("user:a@example.com",)),
            Binding(INVOKER_ROLE, ("allUsers",)),
        )
    ),
    "audit-configs": Policy(
        bindings=(PUBLIC,),
        audit_configs=(
            AuditConfig(
                "run.googleapis.com",
                (
                    AuditLogConfig(1, ("user:quiet@example.com",)),
                    AuditLogConfig(3),
                ),
            ),
            AuditConfig("allServices", (AuditLogConfig(2),)),
        ),
    ),
}


@pytest.mark.parametrize(
    "policy", list(ROUND_TRIP_POLICIES.values()), ids=list(ROUND_TRIP_POLICIES)
)
def test_policy_survives_conversion_both_ways(policy: Policy) -> None:
    assert policy_from_proto(policy_to_proto(policy)) == policy


def test_proto_survives_conversion_both_ways() -> None:
    proto = policy_to_proto(ROUND_TRIP_POLICIES["conditional"])
    again = policy_to_proto(policy_from_proto(proto))
    assert again.SerializeToString(deterministic=True) == proto.SerializeToString(
        deterministic=True
    )


def test_condition_fields_reach_the_proto() -> None:
    proto = policy_to_proto(ROUND_TRIP_POLICIES["conditional"])
    condition = proto.bindings[0].condition
    assert (condition.expression, condition.title, condition.description) == (
        EXPIRING.expression,
        "expires",
        "until 2030",
    )


def test_get_service_gives_its_uri(sandbox: Sandbox, run_api: RunApi) -> None:
    info = run_api.get_service(SHOP)
    assert (info.name, info.uri, info.invoker_iam_disabled) == (
        SHOP,
        sandbox.uri("shop"),
        False,
    )


def test_get_service_reports_a_disabled_invoker_check(
    sandbox: Sandbox, run_api: RunApi
) -> None:
    sandbox.set_invoker_iam_disabled("shop", True)
    assert run_api.get_service(SHOP).invoker_iam_disabled


def test_get_policy_reads_the_sandbox_policy(sandbox: Sandbox, run_api: RunApi) -> None:
    policy = run_api.get_policy(PUBLIC_API)
    assert (policy.bindings, policy.etag, policy.version) == (
        (DEVELOPER, PUBLIC),
        sandbox.policy("public-api").etag,
        1,
    )


def test_set_policy_writes_and_returns_the_new_policy(run_api: RunApi) -> None:
    read = run_api.get_policy(PUBLIC_API)
    written = run_api.set_policy(
        PUBLIC_API, Policy(bindings=(DEVELOPER,), etag=read.etag, version=1)
    )
    assert (written.bindings, written.etag != read.etag) == ((DEVELOPER,), True)
    assert run_api.get_policy(PUBLIC_API) == written


def test_conditional_policy_round_trips_through_the_api(run_api: RunApi) -> None:
    read = run_api.get_policy(PUBLIC_API)
    conditional = Binding(INVOKER_ROLE, ("user:a@example.com",), EXPIRING)
    run_api.set_policy(
        PUBLIC_API,
        Policy(bindings=(*read.bindings, conditional), etag=read.etag, version=3),
    )
    again = run_api.get_policy(PUBLIC_API)
    assert (again.bindings, again.version) == ((DEVELOPER, PUBLIC, conditional), 3)


def test_stale_etag_is_an_etag_conflict(run_api: RunApi) -> None:
    stale = run_api.get_policy(PUBLIC_API)
    run_api.set_policy(PUBLIC_API, stale)
    with pytest.raises(EtagConflict, match=PUBLIC_API.full):
        run_api.set_policy(PUBLIC_API, stale)


def test_concurrent_writer_is_an_etag_conflict(
    sandbox: Sandbox, run_api: RunApi
) -> None:
    sandbox.faults.add_concurrent_writer()
    with pytest.raises(EtagConflict):
        run_api.set_policy(PUBLIC_API, run_api.get_policy(PUBLIC_API))


def test_conditional_policy_at_version_1_is_rejected(run_api: RunApi) -> None:
    read = run_api.get_policy(PUBLIC_API)
    conditional = Binding(INVOKER_ROLE, ("user:a@example.com",), EXPIRING)
    with pytest.raises(PolicyRejected, match="version 3"):
        run_api.set_policy(
            PUBLIC_API,
            Policy(bindings=(conditional,), etag=read.etag, version=1),
        )


def test_unavailable_twice_is_retried_to_success(
    sandbox: Sandbox, run_api: RunApi
) -> None:
    sandbox.faults.fail("GetIamPolicy", "UNAVAILABLE", times=2)
    assert run_api.get_policy(PUBLIC_API).bindings == (DEVELOPER, PUBLIC)


def test_transient_write_failure_is_retried_to_success(
    sandbox: Sandbox, run_api: RunApi
) -> None:
    read = run_api.get_policy(PUBLIC_API)
    sandbox.faults.fail("SetIamPolicy", "INTERNAL", times=1)
    assert run_api.set_policy(PUBLIC_API, read).bindings == read.bindings


def test_unavailable_past_the_attempts_is_retryable(
    sandbox: Sandbox, run_api: RunApi
) -> None:
    sandbox.faults.fail("GetService", "UNAVAILABLE", times=10)
    with pytest.raises(RetryableError, match="UNAVAILABLE"):
        run_api.get_service(PUBLIC_API)


def test_permission_denied_is_permission_denied(
    sandbox: Sandbox, run_api: RunApi
) -> None:
    sandbox.faults.fail("SetIamPolicy", "PERMISSION_DENIED")
    with pytest.raises(PermissionDenied, match=PUBLIC_API.full):
        run_api.set_policy(PUBLIC_API, run_api.get_policy(PUBLIC_API))


def test_org_policy_rejection_names_the_constraint(
    sandbox: Sandbox, run_api: RunApi
) -> None:
    # The intern removes allUsers; the org policy then refuses to have it back.
    policy = sandbox.policy("public-api")
    del policy.bindings[1]
    sandbox.write_policy("public-api", policy, principal=INTERN)
    sandbox.faults.block_public_members()
    read = run_api.get_policy(PUBLIC_API)
    with pytest.raises(PolicyRejected, match=ORG_POLICY_CONSTRAINT) as caught:
        run_api.set_policy(
            PUBLIC_API, Policy((*read.bindings, PUBLIC), read.etag, read.version)
        )
    assert "permitted customer" in str(caught.value)


@pytest.mark.parametrize(
    "call",
    [
        lambda api: api.get_service(GONE),
        lambda api: api.get_policy(GONE),
        lambda api: api.set_policy(GONE, Policy()),
    ],
    ids=["get_service", "get_policy", "set_policy"],
)
def test_unknown_service_is_service_not_found(
    run_api: RunApi, call: Callable[[RunApi], object]
) -> None:
    with pytest.raises(ServiceNotFound, match="gone"):
        call(run_api)


def test_write_is_audited_as_the_watchdog(sandbox: Sandbox, run_api: RunApi) -> None:
    run_api.set_policy(PUBLIC_API, run_api.get_policy(PUBLIC_API))
    [entry] = sandbox.entries()
    assert entry["protoPayload"]["authenticationInfo"]["principalEmail"] == (
        sandbox.default_principal
    )


def test_client_is_not_built_until_first_use() -> None:
    api = RunApi("127.0.0.1:1")
    assert api._client is None


def test_missing_credentials_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", f"{tmp_path}/missing.json")
    with pytest.raises(ConfigError, match="WATCHDOG_RUN_ENDPOINT"):
        RunApi().get_policy(PUBLIC_API)


def test_a_call_slower_than_the_deadline_says_what_happened(
    sandbox: Sandbox,
) -> None:
    sandbox.faults.add_latency("GetService", 3.0)
    api = RunApi(sandbox.run_endpoint, timeout=0.2)
    try:
        with pytest.raises(RetryableError) as raised:
            api.get_service(PUBLIC_API)
    finally:
        api.close()
    assert not str(raised.value).rstrip().endswith("last error:")
    assert "DEADLINE_EXCEEDED" in str(raised.value) or "deadline" in str(raised.value)
