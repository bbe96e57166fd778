"""Drift detection and minimal repair, on hand-written and generated policies."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import CORPUS
from watchdog.model import (
    INVOKER_ROLE,
    AuditConfig,
    AuditLogConfig,
    Binding,
    Condition,
    DesiredState,
    Drift,
    Policy,
)
from watchdog.policy import find_drift, repair_policy

DESIRED = DesiredState()
FRONTEND = "serviceAccount:frontend@example-project.iam.gserviceaccount.com"
DELETED = "deleted:serviceAccount:old@example-project.iam.gserviceaccount.com?uid=1"
EXPIRY = Condition(expression='request.time < timestamp("2030-01-01T00:00:00Z")')


def invoker(*members: str, condition: Condition | None = None) -> Binding:
    return Binding(role=INVOKER_ROLE, members=members, condition=condition)


def developer(*members: str) -> Binding:
    return Binding(role="roles/run.developer", members=members)


@pytest.mark.parametrize(
    ("bindings", "drift"),
    [
        pytest.param((invoker("allUsers"),), Drift(), id="public"),
        pytest.param((), Drift(missing=("allUsers",)), id="empty-policy"),
        pytest.param(
            (invoker(FRONTEND), developer("allUsers")),
            Drift(missing=("allUsers",)),
            id="allusers-on-another-role-only",
        ),
        pytest.param(
            (invoker("allUsers", condition=EXPIRY),),
            Drift(missing=("allUsers",)),
            id="conditional-allusers-is-not-public",
        ),
        pytest.param(
            (invoker("allAuthenticatedUsers"),),
            Drift(missing=("allUsers",), forbidden=("allAuthenticatedUsers",)),
            id="swapped-for-allauthenticated",
        ),
        pytest.param(
            (invoker("allUsers"), invoker("allAuthenticatedUsers", condition=EXPIRY)),
            Drift(forbidden=("allAuthenticatedUsers",)),
            id="forbidden-in-conditional-binding",
        ),
        pytest.param(
            (invoker(FRONTEND), invoker("allUsers")),
            Drift(),
            id="same-role-in-two-bindings",
        ),
    ],
)
def test_find_drift(bindings: tuple[Binding, ...], drift: Drift) -> None:
    assert find_drift(Policy(bindings=bindings), DESIRED) == drift


def test_find_drift_uses_configured_members() -> None:
    desired = DesiredState(public_members=("allUsers", "group:sre@example.com"))
    policy = Policy(bindings=(invoker("allUsers"),))
    assert find_drift(policy, desired) == Drift(missing=("group:sre@example.com",))


def test_repair_adds_to_the_unconditional_binding_and_keeps_the_rest() -> None:
    audit = AuditConfig("run.googleapis.com", (AuditLogConfig(1, ("user:a@b.c",)),))
    policy = Policy(
        bindings=(developer("user:dev@example.com"), invoker(FRONTEND, DELETED)),
        etag=b"\x01etag",
        version=1,
        audit_configs=(audit,),
    )
    repaired = repair_policy(policy, find_drift(policy, DESIRED))
    assert repaired == Policy(
        bindings=(
            developer("user:dev@example.com"),
            invoker(FRONTEND, DELETED, "allUsers"),
        ),
        etag=b"\x01etag",
        version=1,
        audit_configs=(audit,),
    )


def test_repair_of_an_empty_policy_adds_one_binding() -> None:
    repaired = repair_policy(Policy(etag=b"ACAB"), Drift(missing=("allUsers",)))
    assert repaired.bindings == (invoker("allUsers"),)
    assert repaired.etag == b"ACAB"


def test_repair_keeps_conditional_binding_and_writes_version_3() -> None:
    conditional = invoker("allUsers", condition=EXPIRY)
    policy = Policy(bindings=(invoker(FRONTEND), conditional), version=1)
    repaired = repair_policy(policy, find_drift(policy, DESIRED))
    assert repaired.bindings == (invoker(FRONTEND, "allUsers"), conditional)
    assert repaired.version == 3


def test_repair_appends_a_binding_when_only_conditional_invoker_exists() -> None:
    conditional = invoker("allUsers", condition=EXPIRY)
    policy = Policy(bindings=(conditional,), version=3)
    repaired = repair_policy(policy, find_drift(policy, DESIRED))
    assert repaired.bindings == (conditional, invoker("allUsers"))


def test_repair_swaps_forbidden_member_for_public_in_place() -> None:
    policy = Policy(
        bindings=(
            invoker("allAuthenticatedUsers"),
            invoker("allAuthenticatedUsers", FRONTEND, condition=EXPIRY),
        ),
        version=3,
    )
    repaired = repair_policy(policy, find_drift(policy, DESIRED))
    assert repaired.bindings == (
        invoker("allUsers"),
        invoker(FRONTEND, condition=EXPIRY),
    )


def test_repair_drops_a_binding_left_empty() -> None:
    policy = Policy(
        bindings=(
            invoker("allUsers"),
            invoker("allAuthenticatedUsers", condition=EXPIRY),
        ),
        version=3,
    )
    repaired = repair_policy(policy, find_drift(policy, DESIRED))
    assert repaired.bindings == (invoker("allUsers"),)


def test_repair_leaves_forbidden_member_on_other_roles_alone() -> None:
    policy = Policy(bindings=(developer("allAuthenticatedUsers"),))
    repaired = repair_policy(policy, find_drift(policy, DESIRED))
    assert repaired.bindings == (
        developer("allAuthenticatedUsers"),
        invoker("allUsers"),
    )


def test_repair_without_drift_returns_the_same_policy() -> None:
    policy = Policy(bindings=(invoker("allUsers"),), etag=b"x")
    assert repair_policy(policy, Drift()) is policy


def _corpus_policy(name: str) -> tuple[Policy, dict[str, object]]:
    raw = json.loads((CORPUS / f"{name}.json").read_text())
    expect = json.loads((CORPUS / f"{name}.expect.json").read_text())
    bindings = tuple(
        Binding(
            role=b["role"],
            members=tuple(b["members"]),
            condition=Condition(**b["condition"]) if "condition" in b else None,
        )
        for b in raw.get("bindings", [])
    )
    policy = Policy(
        bindings=bindings,
        etag=base64.b64decode(raw.get("etag", "")),
        version=raw.get("version", 0),
    )
    return policy, expect


@pytest.mark.parametrize(
    "name",
    [
        "iam_policy_run_public_v1",
        "iam_policy_run_v3_conditional_allusers",
        "iam_policy_run_empty_acab",
    ],
)
def test_corpus_policy_drift_matches_expectation(name: str) -> None:
    policy, expect = _corpus_policy(name)
    drift = find_drift(policy, DESIRED)
    public = expect.get(
        "allusers_invoker_present_unconditionally",
        expect.get("allusers_invoker_present"),
    )
    assert ("allUsers" not in drift.missing) is public
    repaired = repair_policy(policy, drift)
    assert not find_drift(repaired, DESIRED)
    assert repaired.etag == policy.etag
    # Every binding that was there is still there, member for member, unless it
    # was an invoker binding that gained allUsers.
    for binding in policy.bindings:
        assert binding in repaired.bindings or (
            binding.role == INVOKER_ROLE and binding.condition is None
        )


# Property-based: whatever the policy, the repair fixes the drift and touches
# nothing it has no business touching.

_members = st.sampled_from(
    [
        "allUsers",
        "allAuthenticatedUsers",
        FRONTEND,
        DELETED,
        "user:dev@example.com",
        "group:sre@example.com",
    ]
)
_bindings = st.builds(
    Binding,
    role=st.sampled_from([INVOKER_ROLE, "roles/run.developer", "roles/viewer"]),
    members=st.lists(_members, min_size=1, max_size=4, unique=True).map(tuple),
    condition=st.none() | st.just(EXPIRY),
)
_policies = st.builds(
    Policy,
    bindings=st.lists(_bindings, max_size=6).map(tuple),
    etag=st.binary(min_size=1, max_size=8),
    version=st.sampled_from([0, 1, 3]),
)


@given(_policies)
def test_repair_always_removes_the_drift(policy: Policy) -> None:
    repaired = repair_policy(policy, find_drift(policy, DESIRED))
    assert not find_drift(repaired, DESIRED)


@given(_policies)
def test_repair_never_touches_other_roles(policy: Policy) -> None:
    repaired = repair_policy(policy, find_drift(policy, DESIRED))
    others = [b for b in policy.bindings if b.role != INVOKER_ROLE]
    assert [b for b in repaired.bindings if b.role != INVOKER_ROLE] == others
    assert repaired.etag == policy.etag


@given(_policies)
def test_repair_changes_only_desired_and_forbidden_invoker_members(
    policy: Policy,
) -> None:
    repaired = repair_policy(policy, find_drift(policy, DESIRED))
    touched = set(DESIRED.public_members) | set(DESIRED.forbidden_members)

    def others(p: Policy) -> list[tuple[Condition | None, tuple[str, ...]]]:
        kept = (
            (b.condition, tuple(m for m in b.members if m not in touched))
            for b in p.bindings
            if b.role == INVOKER_ROLE
        )
        return [k for k in kept if k[1]]

    assert others(repaired) == others(policy)


@given(_policies)
def test_repair_is_idempotent(policy: Policy) -> None:
    once = repair_policy(policy, find_drift(policy, DESIRED))
    assert repair_policy(once, find_drift(once, DESIRED)) == once
