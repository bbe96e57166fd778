"""The pure decisions behind "page once, escalate once, announce recovery"."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from watchdog.errors import (
    EtagConflict,
    PermissionDenied,
    PolicyRejected,
    RetryableError,
    ServiceNotFound,
    WatchdogError,
)
from watchdog.incidents import (
    InSync,
    Problem,
    RestoreRecord,
    Rules,
    ServiceRecord,
    Verdict,
    decide,
    describe_span,
    fingerprint_drift,
    fingerprint_failure,
    from_document,
    to_document,
    tool_name,
)
from watchdog.model import Action, Change, Drift, Incident, ServiceName

SERVICE = ServiceName("example-project", "europe-west1", "public-api")
T0 = datetime(2025, 3, 4, 11, 0, 0, tzinfo=UTC)
RULES = Rules()
ORG = "policy rejected: constraints/iam.allowedPolicyMemberDomains"
GITHUB = (
    "principal://iam.googleapis.com/projects/123456789012/locations/global/"
    "workloadIdentityPools/github-pool/subject/repo:example-org/infra:ref:refs/heads/main"
)
TERRAFORM_AGENT = (
    "Terraform/1.7.5 (+https://www.terraform.io) Terraform-Plugin-SDK/2.33.0"
)


def change(origin: str = GITHUB, *, failed: bool = False) -> Change:
    return Change(
        service=SERVICE,
        method="google.cloud.run.v2.Services.SetIamPolicy",
        actor="deployer@example-project.iam.gserviceaccount.com",
        origin=origin,
        delegation=(origin,),
        caller_ip="203.0.113.77",
        user_agent=TERRAFORM_AGENT,
        time=T0,
        insert_id="x",
        failed=failed,
    )


def incident(action: Action = Action.RESTORED, **fields: object) -> Incident:
    values: dict[str, object] = {
        "service": SERVICE,
        "drift": Drift(missing=("allUsers",)),
        "action": action,
        "detected_at": T0,
        "trigger": "audit event",
    }
    if action == Action.FAILED:
        values |= {"error": "Cloud Run refused the policy", "fingerprint": ORG}
    return Incident(**(values | fields))  # type: ignore[arg-type]


def failed(fingerprint: str = ORG) -> Incident:
    return incident(Action.FAILED, fingerprint=fingerprint)


def in_sync() -> InSync:
    return InSync(SERVICE, "found in sync: it was fixed outside the watchdog", "tick")


def run(
    observations: list[Incident | InSync],
    *,
    step: timedelta = timedelta(minutes=1),
    rules: Rules = RULES,
    record: ServiceRecord | None = None,
) -> list[Verdict]:
    """Feed observations one `step` apart, carrying the record; every verdict."""
    record = record or ServiceRecord()
    verdicts = []
    for n, seen in enumerate(observations):
        verdict = decide(record, seen, T0 + n * step, rules)
        record = verdict.record
        verdicts.append(verdict)
    return verdicts


def sent(verdict: Verdict) -> bool:
    return verdict.incident is not None and not verdict.incident.suppressed


# --- persistent failures page once ----------------------------------------------


def test_first_failure_is_sent_and_opens_a_problem() -> None:
    (verdict,) = run([failed()])
    assert sent(verdict)
    assert verdict.record.problem is not None
    assert verdict.record.problem.fingerprint == ORG


def test_same_failure_again_is_suppressed_with_a_count() -> None:
    verdicts = run([failed()] * 38)
    assert [sent(v) for v in verdicts] == [True] + [False] * 37
    last = verdicts[-1].incident
    assert last is not None
    assert last.repeat == "failing for 37 min, 38 checks"


def test_changed_fingerprint_alerts_again() -> None:
    verdicts = run([failed(), failed(), failed("permission denied")])
    assert [sent(v) for v in verdicts] == [True, False, True]
    third = verdicts[2].incident
    assert third is not None
    assert f"was: {ORG}" in third.repeat


def test_reminder_is_sent_after_the_interval() -> None:
    rules = Rules(reminder_interval=timedelta(hours=1))
    verdicts = run([failed()] * 4, step=timedelta(minutes=30), rules=rules)
    assert [sent(v) for v in verdicts] == [True, False, True, False]
    reminder = verdicts[2].incident
    assert reminder is not None
    assert reminder.repeat.startswith("reminder: still failing for 1 h, 3 checks")


def test_no_reminder_when_turned_off() -> None:
    rules = Rules(reminder_interval=None)
    verdicts = run([failed()] * 3, step=timedelta(days=2), rules=rules)
    assert [sent(v) for v in verdicts] == [True, False, False]


def test_report_mode_drift_pages_once() -> None:
    drifted = incident(Action.REPORTED, fingerprint="drift: missing allUsers")
    verdicts = run([drifted] * 3)
    assert [sent(v) for v in verdicts] == [True, False, False]
    assert verdicts[-1].incident is not None
    assert verdicts[-1].incident.repeat.startswith("drifted (report mode) for 2 min")


# --- recovery is announced -------------------------------------------------------


def test_in_sync_without_a_problem_announces_nothing() -> None:
    (verdict,) = run([in_sync()])
    assert verdict.recovery is None
    assert verdict.record == ServiceRecord()


def test_in_sync_after_a_failure_announces_recovery_once() -> None:
    verdicts = run([failed(), failed(), failed(), in_sync(), in_sync()])
    recovery = verdicts[3].recovery
    assert recovery is not None
    assert (recovery.broken_since, recovery.recovered_at) == (T0, T0 + 3 * _MIN)
    assert recovery.checks == 3
    assert recovery.problem == "Cloud Run refused the policy"
    assert recovery.fixed_by.startswith("found in sync")
    assert verdicts[3].record.problem is None
    assert verdicts[4].recovery is None


def test_restore_after_a_failure_announces_recovery_and_still_pages_the_restore() -> (
    None
):
    verdicts = run([failed(), incident(change=None)])
    recovery = verdicts[1].recovery
    assert recovery is not None
    assert recovery.fixed_by == (
        "the watchdog restored it: added allUsers back on audit event"
    )
    assert verdicts[1].incident is not None
    # The restore alert carries who did it and whether the service answers,
    # which the recovery line does not: it is sent too.
    assert not verdicts[1].incident.suppressed


_MIN = timedelta(minutes=1)


# --- a fight escalates once ------------------------------------------------------


def test_third_restore_by_one_actor_escalates() -> None:
    verdicts = run([incident(change=change())] * 3, step=timedelta(hours=1))
    assert [sent(v) for v in verdicts] == [True, True, True]
    escalation = verdicts[2].incident.escalation  # type: ignore[union-attr]
    assert escalation is not None
    assert (escalation.actor, escalation.restores) == (GITHUB, 3)
    assert escalation.first_at == T0
    assert escalation.tools == ("Terraform",)
    assert [v.incident.escalation is None for v in verdicts[:2]] == [True, True]  # type: ignore[union-attr]


def test_restores_after_the_escalation_are_logged_only() -> None:
    verdicts = run([incident(change=change())] * 5)
    assert [sent(v) for v in verdicts] == [True, True, True, False, False]
    fourth = verdicts[3].incident
    assert fourth is not None
    assert fourth.repeat.startswith("restore 4 of a change by the same identity")


def test_other_actors_alert_as_usual_during_a_fight() -> None:
    fight = [incident(change=change())] * 3
    other = incident(change=change("intern@example.com"))
    verdicts = run([*fight, other, incident(change=change())])
    assert [sent(v) for v in verdicts] == [True, True, True, True, False]
    assert verdicts[3].incident.escalation is None  # type: ignore[union-attr]


def test_a_quiet_window_ends_the_escalation() -> None:
    rules = Rules(escalation_window=timedelta(hours=24))
    escalated = run([incident(change=change())] * 3)[-1].record
    later = decide(
        escalated, incident(change=change()), T0 + timedelta(hours=25), rules
    )
    assert sent(Verdict(later.record, later.incident))
    assert later.incident is not None
    assert later.incident.escalation is None
    assert later.record.escalated == {}


def test_restores_spread_wider_than_the_window_never_escalate() -> None:
    verdicts = run([incident(change=change())] * 4, step=timedelta(hours=13))
    assert all(v.incident.escalation is None for v in verdicts)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "unknown",
    [
        pytest.param(None, id="actor-not-yet-known"),
        pytest.param(change(failed=True), id="failed-call-is-no-culprit"),
    ],
)
def test_restores_without_a_known_actor_never_count(unknown: Change | None) -> None:
    verdicts = run([incident(change=unknown)] * 4)
    assert all(sent(v) for v in verdicts)
    assert verdicts[-1].record.restores == ()


def test_escalate_after_is_a_setting() -> None:
    verdicts = run([incident(change=change())] * 2, rules=Rules(escalate_after=2))
    assert verdicts[1].incident.escalation is not None  # type: ignore[union-attr]


# --- fingerprints and words -------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "message", "expected"),
    [
        pytest.param(
            PolicyRejected("x"),
            "refused. Violations: constraints/iam.allowedPolicyMemberDomains (...)",
            ORG,
            id="org-policy-names-its-constraint",
        ),
        pytest.param(
            PolicyRejected("x"), "refused: bad member", "policy rejected", id="policy"
        ),
        pytest.param(PermissionDenied("x"), "x", "permission denied", id="denied"),
        pytest.param(ServiceNotFound("x"), "x", "service not found", id="not-found"),
        pytest.param(EtagConflict("x"), "x", "policy kept changing", id="conflicts"),
        pytest.param(None, "still lacks", "write did not take", id="verify"),
        pytest.param(RetryableError("x"), "x", "RetryableError", id="other"),
    ],
)
def test_failure_fingerprint(
    error: WatchdogError | None, message: str, expected: str
) -> None:
    assert fingerprint_failure(error, message) == expected


def test_drift_fingerprint_names_both_sides_sorted() -> None:
    assert fingerprint_drift(("b", "a"), ("c",)) == "drift: missing a,b; forbidden c"


@pytest.mark.parametrize(
    ("agent", "tool"),
    [
        pytest.param(TERRAFORM_AGENT, "Terraform", id="terraform"),
        pytest.param("pulumi/3.100 grpc", "Pulumi", id="pulumi"),
        pytest.param(
            "google-cloud-sdk gcloud/460.0.0 command/gcloud.run.services.x",
            "gcloud",
            id="gcloud",
        ),
        pytest.param("Mozilla/5.0 (X11)", "a web browser", id="console"),
        pytest.param("my-bot/2.1 (+https://x)", "my-bot", id="other"),
        pytest.param(None, "", id="none"),
    ],
)
def test_tool_name(agent: str | None, tool: str) -> None:
    assert tool_name(agent) == tool


@pytest.mark.parametrize(
    ("span", "text"),
    [
        pytest.param(timedelta(seconds=45), "45 s", id="seconds"),
        pytest.param(timedelta(minutes=37), "37 min", id="minutes"),
        pytest.param(timedelta(hours=2), "2 h", id="hours"),
        pytest.param(timedelta(days=3), "3 days", id="days"),
    ],
)
def test_describe_span(span: timedelta, text: str) -> None:
    assert describe_span(span) == text


def test_document_round_trip_keeps_every_field() -> None:
    record = ServiceRecord(
        problem=Problem(ORG, "refused", T0, T0 + _MIN, 2, T0),
        restores=(RestoreRecord(T0, GITHUB, "Terraform"),),
        escalated={GITHUB: T0},
    )
    assert from_document(to_document(record)) == record
    assert from_document(None) == ServiceRecord()


def test_record_stays_bounded() -> None:
    verdicts = run([incident(change=change(f"user{n}@example.com")) for n in range(50)])
    assert len(verdicts[-1].record.restores) == 20
    assert replace(verdicts[-1].record, restores=()).escalated == {}


def test_escalation_carries_the_configured_quiet_window() -> None:
    rules = Rules(escalation_window=timedelta(hours=6))
    verdicts = run(
        [incident(change=change())] * 3, step=timedelta(hours=1), rules=rules
    )
    escalation = verdicts[2].incident.escalation  # type: ignore[union-attr]
    assert escalation is not None
    assert escalation.quiet_for == timedelta(hours=6)
