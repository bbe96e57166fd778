"""The reconcile step against the sandbox, with the real gateways and clients.

Nothing here is mocked: the Cloud Run and Cloud Logging gateways talk gRPC to the
sandbox, alerts go over HTTP to a webhook receiver, the probe hits the sandbox's
front end. Changes are made as other principals would make them, and audit
events are the entries the sandbox's audit trail wrote for those changes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.fixtures_sandbox import INTERN, PUBLIC_API, SHOP, WATCHDOG_PRINCIPAL
from watchdog.audit import parse_entry
from watchdog.config import Settings, load_settings
from watchdog.model import (
    INVOKER_ROLE,
    Action,
    AuditEvent,
    Drift,
    ProbeResult,
    ServiceName,
    Tick,
)
from watchdog.reconcile import Watchdog
from watchdog.runtime import build_watchdog
from watchdog.sandbox import Sandbox
from watchdog.sandbox.faults import ConcurrentWrite
from watchdog.sandbox.webhook import WebhookReceiver

BuildWatchdog = Callable[..., Watchdog]


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(echo=False) as receiver:
        yield receiver


@pytest.fixture
def make_watchdog(sandbox: Sandbox, webhook: WebhookReceiver) -> BuildWatchdog:
    """A Watchdog wired exactly as the function wires it, to the sandbox."""

    def build(**overrides: str) -> Watchdog:
        env = {
            "WATCHDOG_SERVICES": f"{PUBLIC_API.full} {SHOP.full}",
            "WATCHDOG_RUN_ENDPOINT": sandbox.run_endpoint,
            "WATCHDOG_LOGGING_ENDPOINT": sandbox.logging_endpoint,
            "WATCHDOG_ALERT_WEBHOOK_URL": webhook.url,
            "WATCHDOG_SELF_PRINCIPAL": WATCHDOG_PRINCIPAL,
            "WATCHDOG_HEALTH_TIMEOUT": "2",
            "WATCHDOG_ALERT_FORMAT": "chat",  # the full text, easy to assert on
        } | overrides
        settings: Settings = load_settings(env)
        watchdog = build_watchdog(settings)
        watchdog.sleep = lambda seconds: None  # conflict backoff: no need to wait
        return watchdog

    return build


def invoker_members(sandbox: Sandbox, name: ServiceName) -> list[list[str]]:
    """Members of each invoker binding, in order, unconditional ones only."""
    return [
        list(b.members)
        for b in sandbox.policy(name).bindings
        if b.role == INVOKER_ROLE and not b.HasField("condition")
    ]


def other_bindings(sandbox: Sandbox, name: ServiceName) -> list[str]:
    return sorted(
        str(b) for b in sandbox.policy(name).bindings if b.role != INVOKER_ROLE
    )


def last_event(sandbox: Sandbox) -> AuditEvent:
    change = parse_entry(sandbox.entries()[-1])
    assert change is not None
    return AuditEvent(change=change, delivery="test")


def test_tick_on_public_services_changes_nothing_and_alerts_nobody(
    sandbox: Sandbox, make_watchdog: BuildWatchdog, webhook: WebhookReceiver
) -> None:
    entries_before = len(sandbox.entries())
    outcomes = make_watchdog().handle(Tick(source="test"))
    assert [o.action for o in outcomes] == [Action.NONE, Action.NONE]
    assert len(sandbox.entries()) == entries_before  # no write happened
    assert webhook.alerts == []


def test_tick_restores_removed_allusers_and_names_the_actor_from_logging(
    sandbox: Sandbox, make_watchdog: BuildWatchdog, webhook: WebhookReceiver
) -> None:
    others = other_bindings(sandbox, PUBLIC_API)
    sandbox.change_members(
        PUBLIC_API, remove={INVOKER_ROLE: ["allUsers"]}, principal=INTERN
    )
    assert not sandbox.is_public(PUBLIC_API)

    outcomes = make_watchdog().handle(Tick(source="test"))

    restored = next(o for o in outcomes if o.service == PUBLIC_API)
    assert restored.action == Action.RESTORED
    assert restored.drift == Drift(missing=("allUsers",))
    assert sandbox.is_public(PUBLIC_API)
    assert other_bindings(sandbox, PUBLIC_API) == others
    incident = restored.incident
    assert incident is not None
    assert incident.change is not None
    assert incident.change.actor == INTERN
    assert incident.probe is not None
    assert incident.probe.result == ProbeResult.OK
    assert set(incident.timings) >= {"read", "write", "verify", "probe", "attribute"}
    (alert,) = webhook.wait_for(1, 5)
    assert INTERN in alert.text


def test_audit_event_restores_and_takes_the_actor_from_the_event(
    sandbox: Sandbox, make_watchdog: BuildWatchdog
) -> None:
    sandbox.change_members(
        SHOP,
        remove={INVOKER_ROLE: ["allUsers"]},
        principal="deployer@demo-project.iam.gserviceaccount.com",
        delegation=("intern@example.com",),
    )
    event = last_event(sandbox)

    (outcome,) = make_watchdog().handle(event)

    assert outcome.action == Action.RESTORED
    assert sandbox.is_public(SHOP)
    assert outcome.incident is not None
    assert outcome.incident.change == event.change
    assert outcome.incident.change.origin == "intern@example.com"


def test_report_mode_alerts_and_writes_nothing(
    sandbox: Sandbox, make_watchdog: BuildWatchdog, webhook: WebhookReceiver
) -> None:
    sandbox.change_members(SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal=INTERN)
    entries_before = len(sandbox.entries())

    outcomes = make_watchdog(WATCHDOG_MODE="report").handle(Tick(source="test"))

    assert {o.service: o.action for o in outcomes}[SHOP] == Action.REPORTED
    assert not sandbox.is_public(SHOP)
    assert len(sandbox.entries()) == entries_before
    (alert,) = webhook.wait_for(1, 5)
    assert "report mode" in alert.text


def test_swapped_members_are_both_fixed(
    sandbox: Sandbox, make_watchdog: BuildWatchdog
) -> None:
    sandbox.change_members(
        PUBLIC_API,
        remove={INVOKER_ROLE: ["allUsers"]},
        add={INVOKER_ROLE: ["allAuthenticatedUsers"]},
        principal=INTERN,
    )
    (outcome,) = make_watchdog().handle(last_event(sandbox))
    assert outcome.drift == Drift(
        missing=("allUsers",), forbidden=("allAuthenticatedUsers",)
    )
    members = {m for binding in invoker_members(sandbox, PUBLIC_API) for m in binding}
    assert "allUsers" in members
    assert "allAuthenticatedUsers" not in members


def test_concurrent_change_is_kept_when_the_etag_conflicts(
    sandbox: Sandbox, make_watchdog: BuildWatchdog
) -> None:
    sandbox.change_members(SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal=INTERN)
    writer = ConcurrentWrite(
        member="user:colleague@example.com", role="roles/run.viewer"
    )
    sandbox.faults.add_concurrent_writer(writer)

    (outcome,) = make_watchdog().handle(last_event(sandbox))

    assert outcome.action == Action.RESTORED
    assert sandbox.is_public(SHOP)
    # The stale write was refused, and the second, fresh one kept the
    # colleague's change instead of overwriting it.
    viewers = [
        list(b.members)
        for b in sandbox.policy(SHOP).bindings
        if b.role == "roles/run.viewer"
    ]
    assert viewers == [["user:colleague@example.com"]]
    refused = [
        e
        for e in sandbox.entries()
        if e["protoPayload"].get("status", {}).get("code") == 10  # ABORTED
    ]
    assert len(refused) == 1


def test_org_policy_refusal_fails_loudly_and_removes_nothing(
    sandbox: Sandbox, make_watchdog: BuildWatchdog, webhook: WebhookReceiver
) -> None:
    sandbox.change_members(SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal=INTERN)
    policy_before = sandbox.policy(SHOP)
    sandbox.faults.block_public_members()

    (outcome,) = make_watchdog().handle(last_event(sandbox))

    assert outcome.action == Action.FAILED
    assert not outcome.retryable
    assert "constraints/iam.allowedPolicyMemberDomains" in outcome.detail
    assert sandbox.policy(SHOP) == policy_before
    (alert,) = webhook.wait_for(1, 5)
    assert "NOT restored" in alert.text


def test_disabled_invoker_check_means_public_without_binding(
    sandbox: Sandbox, make_watchdog: BuildWatchdog, webhook: WebhookReceiver
) -> None:
    sandbox.set_invoker_iam_disabled(SHOP, True, principal=INTERN)
    sandbox.change_members(SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal=INTERN)
    entries_before = len(sandbox.entries())

    outcomes = make_watchdog().handle(Tick(source="test"))

    assert {o.service: o.action for o in outcomes}[SHOP] == Action.NONE
    assert len(sandbox.entries()) == entries_before
    assert webhook.alerts == []


def test_event_about_an_unwatched_service_changes_nothing(
    sandbox: Sandbox, make_watchdog: BuildWatchdog
) -> None:
    sandbox.change_members(SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal=INTERN)
    event = last_event(sandbox)

    outcomes = make_watchdog(WATCHDOG_SERVICES=PUBLIC_API.full).handle(event)

    assert outcomes == []
    assert not sandbox.is_public(SHOP)


def test_the_watchdogs_own_write_causes_no_action(
    sandbox: Sandbox, make_watchdog: BuildWatchdog
) -> None:
    sandbox.change_members(SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal=INTERN)
    watchdog = make_watchdog()
    watchdog.handle(last_event(sandbox))
    own = last_event(sandbox)
    assert own.change.actor == WATCHDOG_PRINCIPAL
    entries_before = len(sandbox.entries())

    assert watchdog.handle(own) == []
    assert len(sandbox.entries()) == entries_before


def test_failed_change_is_never_named_as_the_cause(
    sandbox: Sandbox, make_watchdog: BuildWatchdog
) -> None:
    sandbox.change_members(SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal=INTERN)
    sandbox.faults.block_public_members(times=1)
    with pytest.raises(Exception, match="permitted customer"):
        sandbox.change_members(
            SHOP, add={INVOKER_ROLE: ["allUsers"]}, principal="helper@example.com"
        )
    failed = last_event(sandbox)
    assert failed.change.failed

    (outcome,) = make_watchdog().handle(failed)

    assert outcome.action == Action.RESTORED
    assert outcome.incident is not None
    assert outcome.incident.change is not None
    assert outcome.incident.change.actor == INTERN


def test_late_audit_entry_makes_the_actor_not_yet_known(
    sandbox: Sandbox, make_watchdog: BuildWatchdog, webhook: WebhookReceiver
) -> None:
    sandbox.faults.delay_logging(600)
    sandbox.change_members(SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal=INTERN)

    outcomes = make_watchdog().handle(Tick(source="test"))

    outcome = next(o for o in outcomes if o.service == SHOP)
    assert outcome.action == Action.RESTORED
    assert outcome.incident is not None
    assert outcome.incident.change is None
    assert outcome.incident.attribution.startswith("not yet known")
    (alert,) = webhook.wait_for(1, 5)
    assert "not yet known" in alert.text


def test_api_that_stays_unavailable_asks_for_a_retry(
    sandbox: Sandbox, make_watchdog: BuildWatchdog
) -> None:
    sandbox.faults.fail("GetService", "UNAVAILABLE", times=50)

    outcomes = make_watchdog().handle(Tick(source="test"))

    assert all(o.action == Action.FAILED and o.retryable for o in outcomes)


def test_conditional_allusers_gets_an_unconditional_binding_beside_it(
    sandbox: Sandbox, make_watchdog: BuildWatchdog
) -> None:
    from google.iam.v1 import policy_pb2
    from google.type import expr_pb2

    policy = sandbox.policy(SHOP)
    for binding in policy.bindings:
        if binding.role == INVOKER_ROLE:
            binding.condition.CopyFrom(
                expr_pb2.Expr(
                    title="expirable access",
                    expression="request.time < timestamp('2020-10-01T00:00:00Z')",
                )
            )
    policy.version = 3
    sandbox.write_policy(SHOP, policy, principal=INTERN)
    conditional = [
        policy_pb2.Binding.FromString(b.SerializeToString())
        for b in sandbox.policy(SHOP).bindings
        if b.HasField("condition")
    ]

    (outcome,) = make_watchdog().handle(last_event(sandbox))

    assert outcome.action == Action.RESTORED
    after = sandbox.policy(SHOP)
    assert after.version == 3
    assert [b for b in after.bindings if b.HasField("condition")] == conditional
    assert ["allUsers"] in invoker_members(sandbox, SHOP)


def test_drift_fixed_by_another_writer_meanwhile_is_alerted_once(
    sandbox: Sandbox, make_watchdog: BuildWatchdog, webhook: WebhookReceiver
) -> None:
    sandbox.change_members(SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal=INTERN)
    # Another watchdog instance (or this write, its answer lost and its retry
    # refused) puts allUsers back just before this write lands.
    sandbox.faults.add_concurrent_writer(
        ConcurrentWrite(member="allUsers", role=INVOKER_ROLE, principal="other")
    )

    (outcome,) = make_watchdog().handle(last_event(sandbox))

    assert outcome.action == Action.RESTORED
    assert outcome.detail == ""
    assert sandbox.is_public(SHOP)
    (alert,) = webhook.wait_for(1, 5)
    assert f"who: {INTERN}" in alert.text


def test_tick_that_finds_an_old_unhandled_entry_says_the_feed_may_be_dead(
    sandbox: Sandbox, make_watchdog: BuildWatchdog
) -> None:
    # The intern's change happened ten minutes ago: the sink had all that time.
    # The live entry stays hidden for an hour; a copy dated back is visible.
    sandbox.faults.delay_logging(3600)
    sandbox.change_members(SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal=INTERN)
    old = copy.deepcopy(sandbox.entries()[-1])
    ten_minutes_ago = datetime.now(UTC) - timedelta(minutes=10)
    old["timestamp"] = ten_minutes_ago.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    old["insertId"] = "backdated-entry"
    sandbox.faults.delay_logging(0)
    sandbox.store.write_json(old)

    outcomes = make_watchdog().handle(Tick(source="test"))

    incident = next(o.incident for o in outcomes if o.service == SHOP)
    assert incident is not None
    assert incident.change is not None
    assert incident.change.insert_id == "backdated-entry"
    assert "log sink may be unable to publish" in incident.attribution


def test_tick_that_finds_a_fresh_entry_does_not_blame_the_feed(
    sandbox: Sandbox, make_watchdog: BuildWatchdog
) -> None:
    sandbox.change_members(SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal=INTERN)

    outcomes = make_watchdog().handle(Tick(source="test"))

    incident = next(o.incident for o in outcomes if o.service == SHOP)
    assert incident is not None
    assert "log sink" not in incident.attribution


# --- memory across invocations (watchdog.incidents) --------------------------------

GITHUB = (
    "principal://iam.googleapis.com/projects/123456789012/locations/global/"
    "workloadIdentityPools/github-pool/subject/repo:example-org/infra:ref:refs/heads/main"
)
DEPLOYER = "deployer@demo-project.iam.gserviceaccount.com"
TERRAFORM_AGENT = (
    "Terraform/1.7.5 (+https://www.terraform.io) Terraform-Plugin-SDK/2.33.0 "
    "terraform-provider-google/5.21.0"
)


@pytest.fixture(params=["memory", "firestore"])
def state_mode(request: pytest.FixtureRequest) -> dict[str, str]:
    """Settings for each state backend; firestore runs against the emulator."""
    if request.param == "memory":
        return {"WATCHDOG_STATE": "memory"}
    env: dict[str, str] = request.getfixturevalue("firestore_env")
    return env


def instances(
    make_watchdog: BuildWatchdog, env: dict[str, str]
) -> Callable[[], Watchdog]:
    """The watchdog for the next invocation.

    With Firestore every invocation gets a fresh instance, as after a cold start
    or on another function instance: only the shared state connects them. In
    memory mode one instance must handle them all (its memory is its own).
    """
    if env["WATCHDOG_STATE"] == "firestore":
        return lambda: make_watchdog(**env)
    shared = make_watchdog(**env)
    return lambda: shared


def test_persistent_org_policy_block_pages_once_then_announces_recovery(
    sandbox: Sandbox,
    make_watchdog: BuildWatchdog,
    webhook: WebhookReceiver,
    state_mode: dict[str, str],
) -> None:
    sandbox.change_members(SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal=INTERN)
    sandbox.faults.block_public_members()
    next_instance = instances(make_watchdog, state_mode)

    ticks = [next_instance().handle(Tick(source="test")) for _ in range(3)]

    shop = [next(o for o in outcomes if o.service == SHOP) for outcomes in ticks]
    assert [o.action for o in shop] == [Action.FAILED] * 3
    assert [o.incident.suppressed for o in shop if o.incident] == [False, True, True]
    assert shop[2].incident is not None
    assert shop[2].incident.repeat.endswith("3 checks")
    assert len(webhook.alerts) == 1

    sandbox.faults.clear()  # the org policy now allows allUsers
    outcomes = next_instance().handle(Tick(source="test"))

    restored = next(o for o in outcomes if o.service == SHOP)
    assert restored.action == Action.RESTORED
    assert restored.recovery is not None
    assert restored.recovery.checks == 3
    alerts = webhook.wait_for(3, 5)
    assert len(alerts) == 3  # the first failure, then the recovery and the restore
    assert "recovered after" in alerts[1].text
    assert "constraints/iam.allowedPolicyMemberDomains" in alerts[1].text
    assert "restored" in alerts[2].text

    again = next_instance().handle(Tick(source="test"))
    assert all(o.recovery is None for o in again)
    assert len(webhook.alerts) == 3


def test_an_actor_that_keeps_removing_allusers_is_escalated_once(
    sandbox: Sandbox,
    make_watchdog: BuildWatchdog,
    webhook: WebhookReceiver,
    state_mode: dict[str, str],
) -> None:
    next_instance = instances(make_watchdog, state_mode)
    outcomes = []
    for _ in range(4):
        sandbox.change_members(
            SHOP,
            remove={INVOKER_ROLE: ["allUsers"]},
            principal=DEPLOYER,
            delegation=(GITHUB,),
            user_agent=TERRAFORM_AGENT,
        )
        (outcome,) = next_instance().handle(last_event(sandbox))
        outcomes.append(outcome)

    assert [o.action for o in outcomes] == [Action.RESTORED] * 4
    assert sandbox.is_public(SHOP)
    incidents = [o.incident for o in outcomes]
    assert [i.escalation is not None for i in incidents if i] == [
        False,
        False,
        True,
        False,
    ]
    assert [i.suppressed for i in incidents if i] == [False, False, False, True]
    alerts = webhook.alerts
    assert len(alerts) == 3
    assert "keeps removing allUsers from shop" in alerts[2].text
    assert "3 times in under a minute, via Terraform" in alerts[2].text
    assert "repo:example-org/infra:ref:refs/heads/main" in alerts[2].text


def test_restores_by_another_actor_still_alert_during_a_fight(
    sandbox: Sandbox, make_watchdog: BuildWatchdog, webhook: WebhookReceiver
) -> None:
    watchdog = make_watchdog()
    for principal in (DEPLOYER, DEPLOYER, DEPLOYER, INTERN):
        sandbox.change_members(
            SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal=principal
        )
        watchdog.handle(last_event(sandbox))
    assert len(webhook.alerts) == 4
    assert INTERN in webhook.alerts[3].text


def test_a_firestore_outage_never_stops_a_restore_or_its_alert(
    sandbox: Sandbox,
    make_watchdog: BuildWatchdog,
    webhook: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from watchdog.sandbox.functions import free_port
    from watchdog.state_store import FirestoreStateStore

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    watchdog = make_watchdog(WATCHDOG_STATE="firestore")
    assert isinstance(watchdog.state, FirestoreStateStore)
    watchdog.state.deadline = 1.0  # nothing answers on that port
    sandbox.change_members(SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal=INTERN)

    (outcome,) = watchdog.handle(last_event(sandbox))

    assert outcome.action == Action.RESTORED
    assert sandbox.is_public(SHOP)
    assert len(webhook.wait_for(1, 5)) == 1
    errors = [r for r in caplog.records if "state store failed" in r.getMessage()]
    assert errors and errors[0].levelname == "ERROR"


def test_api_down_after_the_drift_is_found_still_alerts_and_asks_for_a_retry(
    sandbox: Sandbox, make_watchdog: BuildWatchdog, webhook: WebhookReceiver
) -> None:
    sandbox.change_members(SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal=INTERN)
    sandbox.faults.fail("SetIamPolicy", "UNAVAILABLE", times=50)

    (outcome,) = make_watchdog().handle(last_event(sandbox))

    assert outcome.action == Action.FAILED
    assert outcome.retryable
    (alert,) = webhook.wait_for(1, 5)
    assert "not confirmed" in alert.text


def test_late_entry_never_blames_the_previous_incidents_actor(
    sandbox: Sandbox, make_watchdog: BuildWatchdog
) -> None:
    watchdog = make_watchdog()
    sandbox.change_members(SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal=INTERN)
    watchdog.handle(Tick(source="test"))  # restores, naming the intern
    sandbox.faults.delay_logging(600)
    sandbox.change_members(
        SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal="contractor@example.com"
    )

    outcomes = watchdog.handle(Tick(source="test"))

    incident = next(o.incident for o in outcomes if o.service == SHOP)
    assert incident is not None
    assert incident.change is None
    assert incident.attribution.startswith("not yet known")


def test_a_newer_harmless_change_is_not_named_as_the_cause(
    sandbox: Sandbox, make_watchdog: BuildWatchdog
) -> None:
    sandbox.change_members(
        SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal="eve@example.com"
    )
    sandbox.change_members(
        SHOP,
        add={"roles/run.viewer": ["user:x@example.com"]},
        principal="bob@example.com",
    )

    outcomes = make_watchdog().handle(Tick(source="test"))

    incident = next(o.incident for o in outcomes if o.service == SHOP)
    assert incident is not None
    assert incident.change is not None
    assert incident.change.actor == "eve@example.com"


def test_someone_impersonating_the_watchdog_is_checked_and_named(
    sandbox: Sandbox, make_watchdog: BuildWatchdog
) -> None:
    sandbox.change_members(
        SHOP,
        remove={INVOKER_ROLE: ["allUsers"]},
        principal=WATCHDOG_PRINCIPAL,
        delegation=("mallory@example.com",),
    )

    (outcome,) = make_watchdog().handle(last_event(sandbox))

    assert outcome.action == Action.RESTORED
    assert outcome.incident is not None
    assert outcome.incident.change is not None
    assert outcome.incident.change.origin == "mallory@example.com"


def test_an_unrelated_event_does_not_take_the_blame_for_an_earlier_removal(
    sandbox: Sandbox, make_watchdog: BuildWatchdog
) -> None:
    # Alice's removal reaches Cloud Logging, but its event is lost.
    sandbox.change_members(
        SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal="alice@example.com"
    )
    sandbox.change_members(
        SHOP, add={"roles/run.viewer": ["user:x@example.com"]}, principal="bob@ex.com"
    )

    (outcome,) = make_watchdog().handle(last_event(sandbox))  # Bob's event

    assert outcome.incident is not None
    assert outcome.incident.change is not None
    assert outcome.incident.change.actor == "alice@example.com"


def test_a_late_event_does_not_blame_its_actor_for_a_newer_removal(
    sandbox: Sandbox, make_watchdog: BuildWatchdog
) -> None:
    watchdog = make_watchdog()
    sandbox.change_members(
        SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal="alice@example.com"
    )
    alices_event = last_event(sandbox)
    watchdog.handle(Tick(source="test"))  # restores
    sandbox.change_members(
        SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal="bob@example.com"
    )

    (outcome,) = watchdog.handle(alices_event)  # delivered again, late

    assert outcome.incident is not None
    assert outcome.incident.change is not None
    assert outcome.incident.change.actor == "bob@example.com"


def test_a_policy_change_is_named_before_a_newer_service_update(
    sandbox: Sandbox, make_watchdog: BuildWatchdog
) -> None:
    sandbox.change_members(
        SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal="alice@example.com"
    )
    sandbox.set_invoker_iam_disabled(SHOP, False, principal="bob@example.com")

    outcomes = make_watchdog().handle(Tick(source="test"))

    incident = next(o.incident for o in outcomes if o.service == SHOP)
    assert incident is not None
    assert incident.change is not None
    assert incident.change.actor == "alice@example.com"


def test_a_service_the_watchdog_cannot_read_pages_once(
    sandbox: Sandbox, make_watchdog: BuildWatchdog, webhook: WebhookReceiver
) -> None:
    watchdog = make_watchdog()
    sandbox.faults.fail("GetIamPolicy", "PERMISSION_DENIED", times=100)

    first = watchdog.handle(Tick(source="test"))
    second = watchdog.handle(Tick(source="test"))

    assert all(o.action == Action.FAILED for o in first + second)
    alerts = webhook.wait_for(2, 5)  # one per service, the second tick quiet
    assert len(webhook.alerts) == 2
    assert all("NOT CHECKED" in alert.text for alert in alerts)


def test_a_new_removal_during_an_open_problem_is_paged_not_folded_into_recovery(
    sandbox: Sandbox, make_watchdog: BuildWatchdog, webhook: WebhookReceiver
) -> None:
    watchdog = make_watchdog()
    sandbox.change_members(
        SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal="alice@example.com"
    )
    sandbox.faults.fail("SetIamPolicy", "UNAVAILABLE", times=50)
    watchdog.handle(last_event(sandbox))  # fails, alerts
    sandbox.faults.clear()
    sandbox.change_members(
        SHOP, add={INVOKER_ROLE: ["allUsers"]}, principal="carol@example.com"
    )
    sandbox.change_members(
        SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal="mallory@example.com"
    )

    (outcome,) = watchdog.handle(Tick(source="test"))[1:]

    assert outcome.action == Action.RESTORED
    texts = [alert.text for alert in webhook.wait_for(3, 5)]
    assert any("who: mallory@example.com" in text for text in texts)
