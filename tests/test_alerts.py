"""Alert renderings and their delivery to a real webhook receiver and Pub/Sub."""

from __future__ import annotations

import json
import logging
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest
from requests.utils import requote_uri

from watchdog.alerts import (
    CHAT_TEXT_LIMIT,
    SLACK_BLOCK_LIMIT,
    SLACK_HEADER_LIMIT,
    SLACK_SECTION_LIMIT,
    AlertSender,
    DeliveryResult,
    render_chat,
    render_json,
    render_slack,
    render_text,
)
from watchdog.errors import ConfigError
from watchdog.incidents import describe_span
from watchdog.logs import JsonFormatter
from watchdog.model import (
    Action,
    Change,
    Drift,
    Escalation,
    Incident,
    Probe,
    ProbeResult,
    Recovery,
    ServiceName,
)
from watchdog.sandbox.webhook import WebhookReceiver

SERVICE = ServiceName("example-project", "europe-west1", "public-api")
DETECTED = datetime(2025, 3, 4, 11, 3, 16, tzinfo=UTC)
DEPLOYER = "deployer@example-project.iam.gserviceaccount.com"
GITHUB = (
    "principal://iam.googleapis.com/projects/123456789012/locations/global/"
    "workloadIdentityPools/github-pool/subject/repo:example-org/infra:ref:refs/heads/main"
)
TERRAFORM = (
    "Terraform/1.7.5 (+https://www.terraform.io) Terraform-Plugin-SDK/2.33.0 "
    "terraform-provider-google/5.21.0,gzip(gfe)"
)
ORG_POLICY_ERROR = (
    "the API refused the policy: One or more users named in the policy do not "
    "belong to a permitted customer (constraints/iam.allowedPolicyMemberDomains)"
)
TIMINGS = {"read": 0.05, "write": 0.1, "verify": 0.03, "probe": 0.02, "attribute": 0.2}
SECRET_PATH = "/services/T000/B000/SECRETTOKEN"

WIF_CHANGE = Change(
    service=SERVICE,
    method="google.cloud.run.v2.Services.SetIamPolicy",
    actor=DEPLOYER,
    origin=GITHUB,
    delegation=(GITHUB,),
    caller_ip="203.0.113.77",
    user_agent=TERRAFORM,
    time=datetime(2025, 3, 4, 11, 2, 41, 905112, tzinfo=UTC),
    insert_id="9q8w7e6r5t4y",
    failed=False,
)
DENIED_CHANGE = Change(
    service=SERVICE,
    method="google.cloud.run.v1.Services.SetIamPolicy",
    actor="intern@example.com",
    origin="intern@example.com",
    delegation=(),
    caller_ip="198.51.100.4",
    user_agent=(
        "google-cloud-sdk gcloud/460.0.0 "
        "command/gcloud.run.services.add-iam-policy-binding"
    ),
    time=datetime(2025, 3, 4, 10, 0, 0, tzinfo=UTC),
    insert_id="denied1",
    failed=True,
    status_message="PERMISSION_DENIED: Permission 'run.services.setIamPolicy' denied",
)


def restored(**changes: Any) -> Incident:
    """A restore after a Terraform run through GitHub's WIF; fields overridable."""
    fields: dict[str, Any] = {
        "service": SERVICE,
        "drift": Drift(missing=("allUsers",)),
        "action": Action.RESTORED,
        "detected_at": DETECTED,
        "trigger": "audit event",
        "change": WIF_CHANGE,
        "attribution": "from the audit event that triggered this check",
        "probe": Probe(ProbeResult.OK, status=200, seconds=0.02),
        "timings": TIMINGS,
    }
    return Incident(**(fields | changes))


INCIDENTS = {
    "restored-wif": restored(),
    "report-mode": restored(
        action=Action.REPORTED, mode="report", probe=None, timings={"read": 0.05}
    ),
    "failed-org-policy": restored(
        action=Action.FAILED, error=ORG_POLICY_ERROR, probe=None
    ),
    "unknown-actor": restored(
        change=None,
        trigger="tick",
        attribution="not yet known: no audit entry for this service since 05:03 UTC",
    ),
    "forbidden-after-restore": restored(
        probe=Probe(
            ProbeResult.FORBIDDEN,
            status=403,
            detail="403 from Google's front end: the invoker IAM check refused",
            seconds=0.02,
        )
    ),
    "denied-attempt": restored(change=DENIED_CHANGE, trigger="tick"),
    "swapped-members": restored(
        drift=Drift(missing=("allUsers",), forbidden=("allAuthenticatedUsers",))
    ),
}


def huge() -> Incident:
    """Every field that can grow, grown far past every chat limit."""
    members = tuple(f"user:person{n}@example.com" for n in range(5000))
    change = Change(
        service=SERVICE,
        method="google.cloud.run.v2.Services.SetIamPolicy",
        actor="a" * 10_000 + "@example.com",
        origin=GITHUB,
        delegation=tuple(
            f"serviceAccount:hop{n}@x.iam.gserviceaccount.com" for n in range(300)
        ),
        caller_ip="203.0.113.77",
        user_agent="Terraform/1.7.5 " + "x" * 100_000,
        time=DETECTED,
        insert_id="big",
        failed=False,
        removed={"roles/run.invoker": members},
        added={f"roles/custom.role{n}": members[:3] for n in range(500)},
    )
    return restored(
        drift=Drift(missing=members, forbidden=members),
        change=change,
        attribution="z" * 50_000,
        error="e" * 50_000,
        timings={f"step{n}": 0.1 for n in range(1000)},
    )


# --- text -------------------------------------------------------------------------


def test_headline_states_service_drift_restore_and_answer() -> None:
    first = render_text(INCIDENTS["restored-wif"]).splitlines()[0]
    assert first == (
        "public-api (projects/example-project/locations/europe-west1/services/"
        "public-api): allUsers lost roles/run.invoker — restored in 180 ms; "
        "service answers 200 again"
    )


def test_text_names_the_actor_and_the_wif_origin_readably() -> None:
    text = render_text(INCIDENTS["restored-wif"])
    assert f"who: {DEPLOYER}\n" in text
    assert (
        "through: repo:example-org/infra:ref:refs/heads/main (workload identity "
        f"pool github-pool, project 123456789012) → {DEPLOYER}\n"
    ) in text


def test_text_says_when_relative_to_detection() -> None:
    text = render_text(INCIDENTS["restored-wif"])
    assert "when: 2025-03-04 11:02:41 UTC (34 s before detection)" in text


def test_text_says_from_where_and_with_which_tool() -> None:
    text = render_text(INCIDENTS["restored-wif"])
    assert "from: 203.0.113.77 via Terraform/1.7.5\n" in text
    assert "method: google.cloud.run.v2.Services.SetIamPolicy" in text


def test_text_lists_timings_per_step() -> None:
    text = render_text(INCIDENTS["restored-wif"])
    assert (
        "timings: read 50 ms, write 100 ms, verify 30 ms, probe 20 ms, attribute 200 ms"
    ) in text


def test_report_mode_says_nothing_changed() -> None:
    first = render_text(INCIDENTS["report-mode"]).splitlines()[0]
    assert "— report mode: not changed;" in first


def test_failed_restore_says_not_restored_and_why() -> None:
    text = render_text(INCIDENTS["failed-org-policy"])
    assert text.splitlines()[0].startswith(
        "public-api: NOT restored: blocked by org policy "
        "constraints/iam.allowedPolicyMemberDomains — allUsers lost roles/run.invoker"
    )
    assert f"\nerror: {ORG_POLICY_ERROR}\n" in text


def test_unknown_actor_says_not_yet_known_with_the_attribution() -> None:
    text = render_text(INCIDENTS["unknown-actor"])
    assert "who: not yet known (no audit entry found yet)\n" in text
    assert "attribution: not yet known: no audit entry for this service" in text


def test_denied_attempt_is_context_not_the_culprit() -> None:
    text = render_text(INCIDENTS["denied-attempt"])
    assert "who: not known; the last attempt was DENIED: intern@example.com" in text
    assert "changed nothing" in text
    assert "via gcloud (gcloud.run.services.add-iam-policy-binding)" in text


def test_forbidden_probe_after_restore_explains_propagation() -> None:
    text = render_text(INCIDENTS["forbidden-after-restore"])
    assert "service still answers 403" in text.splitlines()[0]
    assert "IAM can take minutes to propagate" in text
    assert "No further action was taken." in text


def test_swapped_members_name_both_sides() -> None:
    first = render_text(INCIDENTS["swapped-members"]).splitlines()[0]
    assert "allUsers lost roles/run.invoker; allAuthenticatedUsers gained it" in first


# --- every rendering --------------------------------------------------------------

RENDERINGS: dict[str, Callable[[Incident], str]] = {
    "text": render_text,
    "slack": lambda incident: json.dumps(render_slack(incident), ensure_ascii=False),
    "chat": lambda incident: render_chat(incident)["text"],
    "json": lambda incident: json.dumps(render_json(incident), ensure_ascii=False),
}
ACTION_WORDS = {
    "restored-wif": "restored",
    "report-mode": "report mode",
    "failed-org-policy": "NOT restored",
    "unknown-actor": "restored",
    "forbidden-after-restore": "restored",
    "denied-attempt": "restored",
    "swapped-members": "restored",
}


@pytest.mark.parametrize("rendering", RENDERINGS, ids=str)
@pytest.mark.parametrize("case", INCIDENTS, ids=str)
def test_every_rendering_carries_the_essentials(rendering: str, case: str) -> None:
    rendered = RENDERINGS[rendering](INCIDENTS[case])
    for fact in (SERVICE.full, "allUsers", "roles/run.invoker", ACTION_WORDS[case]):
        assert fact in rendered


def test_slack_rendering_has_header_blocks_and_fallback_text() -> None:
    message = render_slack(INCIDENTS["restored-wif"])
    assert message["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Public access restored: public-api"},
    }
    assert message["text"].startswith("public-api (projects/example-project/")


def test_slack_escapes_its_control_characters() -> None:
    incident = restored(drift=Drift(missing=("user:<script>&@example.com",)))
    sections = json.dumps(render_slack(incident)["blocks"])
    assert "&lt;script&gt;&amp;" in sections
    assert "<script>" not in sections


def test_chat_rendering_is_the_text() -> None:
    incident = INCIDENTS["unknown-actor"]
    assert render_chat(incident) == {"text": render_text(incident)}


# --- size limits (PITFALLS 14) ----------------------------------------------------


def _slack_texts(message: dict[str, Any]) -> list[str]:
    texts = []
    for block in message["blocks"]:
        if "text" in block:
            texts.append(block["text"]["text"])
        texts.extend(element["text"] for element in block.get("elements", []))
    return texts


def test_slack_limits_hold_for_oversized_fields() -> None:
    message = render_slack(huge())
    assert len(message["blocks"]) <= SLACK_BLOCK_LIMIT
    assert len(message["blocks"][0]["text"]["text"]) <= SLACK_HEADER_LIMIT
    assert all(len(text) <= SLACK_SECTION_LIMIT for text in _slack_texts(message))
    assert len(message["text"]) <= SLACK_SECTION_LIMIT


def test_slack_header_is_cut_for_a_long_service_name() -> None:
    long_name = ServiceName("p", "r", "s" * 400)
    header = render_slack(restored(service=long_name))["blocks"][0]["text"]["text"]
    assert len(header) <= SLACK_HEADER_LIMIT


def test_chat_limit_holds_and_the_essentials_come_first() -> None:
    text = render_chat(huge())["text"]
    assert len(text) <= CHAT_TEXT_LIMIT
    assert text.startswith(f"public-api ({SERVICE.full}): user:person0@example.com")


def test_long_member_lists_are_cut_with_a_count() -> None:
    first = render_text(huge()).splitlines()[0]
    assert "… and 4990 more members" in first


def test_long_delegation_chain_keeps_origin_and_actor() -> None:
    through = next(
        line for line in render_text(huge()).splitlines() if line.startswith("through:")
    )
    assert "hop0@x.iam.gserviceaccount.com" in through
    assert "… 297 more hops …" in through


def test_json_cuts_lists_and_says_how_much() -> None:
    document = render_json(huge())
    assert len(document["missing"]) == 100
    assert document["truncated"]["missing"] == 4900
    assert len(document["user_agent"]) <= 2000
    assert len(json.dumps(document)) < 1_000_000


def test_text_of_every_line_stays_readable_for_oversized_fields() -> None:
    assert all(len(line) <= 4000 for line in render_text(huge()).splitlines())


# --- JSON -------------------------------------------------------------------------

JSON_KEYS = {
    "summary",
    "cause",
    "next",
    "service",
    "service_name",
    "project",
    "location",
    "missing",
    "forbidden",
    "action",
    "mode",
    "detected_at",
    "trigger",
    "actor",
    "origin",
    "delegation",
    "caller_ip",
    "user_agent",
    "change_time",
    "method",
    "insert_id",
    "change_failed",
    "status_message",
    "removed",
    "added",
    "attribution",
    "probe",
    "error",
    "timings",
    "fingerprint",
    "suppressed",
    "repeat",
    "escalation",
    "kind",
    "truncated",
}


@pytest.mark.parametrize("case", INCIDENTS, ids=str)
def test_json_keys_are_stable(case: str) -> None:
    document = render_json(INCIDENTS[case])
    assert set(document) == JSON_KEYS
    assert set(document["probe"]) == {"result", "status", "detail", "seconds"}


def test_json_values_of_a_restore() -> None:
    document = render_json(INCIDENTS["forbidden-after-restore"])
    assert document["service"] == SERVICE.full
    assert document["missing"] == ["allUsers"]
    assert document["action"] == "restored"
    assert document["detected_at"] == "2025-03-04T11:03:16Z"
    assert document["change_time"] == "2025-03-04T11:02:41.905112Z"
    assert document["delegation"] == [GITHUB]
    assert document["probe"]["result"] == "forbidden"
    assert document["timings"] == TIMINGS


def test_json_of_unknown_actor_has_nulls() -> None:
    document = render_json(INCIDENTS["unknown-actor"])
    assert (document["actor"], document["method"], document["delegation"]) == (
        None,
        None,
        [],
    )


# --- delivery to the webhook ------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(echo=False) as started:
        yield started


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def every_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture every logger at DEBUG, urllib3's included."""
    caplog.set_level(logging.DEBUG)
    return caplog


def sender_for(url: str, alert_format: str = "slack", **options: Any) -> AlertSender:
    # A short backoff keeps the retry tests fast; the policy is the real one.
    settings: dict[str, Any] = {"timeout": 2, "backoff_factor": 0.01} | options
    return AlertSender(webhook_url=url, alert_format=alert_format, **settings)


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every record as text and as the JSON line Cloud Logging would get."""
    formatter = JsonFormatter()
    return "\n".join(
        [caplog.text]
        + [record.getMessage() for record in caplog.records]
        + [formatter.format(record) for record in caplog.records]
    )


@pytest.mark.parametrize(
    ("alert_format", "key"),
    [
        pytest.param("slack", "blocks", id="slack"),
        pytest.param("chat", "text", id="chat"),
        pytest.param("json", "service", id="json"),
    ],
)
def test_alert_arrives_at_the_webhook(
    receiver: WebhookReceiver, alert_format: str, key: str
) -> None:
    sender = sender_for(receiver.url + SECRET_PATH, alert_format)
    results = sender.send(INCIDENTS["restored-wif"])
    alert = receiver.wait_for(1)[0]
    assert key in alert.payload
    assert alert.path == SECRET_PATH
    assert [(r.channel, r.ok) for r in results] == [
        ("log", True),
        (f"webhook ({alert_format})", True),
    ]


def test_webhook_is_retried_after_503s(receiver: WebhookReceiver) -> None:
    receiver.fail_next(2, 503)
    results = sender_for(receiver.url + SECRET_PATH).send(INCIDENTS["restored-wif"])
    assert results[-1].ok
    assert (receiver.attempts, len(receiver.alerts)) == (3, 1)


def test_webhook_is_retried_after_429_with_retry_after(
    receiver: WebhookReceiver,
) -> None:
    receiver.fail_next(1, 429, retry_after="0")
    results = sender_for(receiver.url + SECRET_PATH).send(INCIDENTS["restored-wif"])
    assert results[-1].ok
    assert receiver.attempts == 2


def test_webhook_that_keeps_failing_gives_a_failed_result(
    receiver: WebhookReceiver,
) -> None:
    receiver.fail_next(100, 503)
    results = sender_for(receiver.url + SECRET_PATH).send(INCIDENTS["restored-wif"])
    assert (results[-1].channel, results[-1].ok) == ("webhook (slack)", False)
    assert "503" in results[-1].detail


def test_structured_record_is_written_even_when_the_webhook_fails(
    receiver: WebhookReceiver, every_log: pytest.LogCaptureFixture
) -> None:
    receiver.fail_next(100, 500)
    sender_for(receiver.url + SECRET_PATH).send(INCIDENTS["restored-wif"])
    alerts = [r for r in every_log.records if getattr(r, "fields", {}).get("alert")]
    assert len(alerts) == 1
    assert (
        alerts[0].getMessage() == render_text(INCIDENTS["restored-wif"]).split("\n")[0]
    )
    assert alerts[0].fields["actor"] == DEPLOYER  # type: ignore[attr-defined]


def test_failed_webhook_is_logged_at_error_without_the_url(
    receiver: WebhookReceiver, every_log: pytest.LogCaptureFixture
) -> None:
    receiver.fail_next(100, 500)
    sender_for(receiver.url + SECRET_PATH).send(INCIDENTS["restored-wif"])
    failures = [r for r in every_log.records if "delivery" in r.getMessage()]
    assert [r.levelno for r in failures] == [logging.ERROR]
    assert "webhook (slack)" in failures[0].getMessage()


def test_unreachable_webhook_never_leaks_the_url(
    closed_port: int,
    every_log: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{closed_port}{SECRET_PATH}"
    results = sender_for(url).send(INCIDENTS["restored-wif"])
    captured = capsys.readouterr()
    assert not results[-1].ok
    everything = everything_logged(every_log) + captured.out + captured.err
    everything += "".join(r.detail for r in results)
    assert "Retrying" in everything  # urllib3 did log its retries, redacted
    assert "SECRETTOKEN" not in everything


def test_failing_webhook_never_leaks_the_url(
    receiver: WebhookReceiver,
    every_log: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    receiver.fail_next(100, 503)
    results = sender_for(receiver.url + SECRET_PATH).send(
        INCIDENTS["failed-org-policy"]
    )
    captured = capsys.readouterr()
    everything = everything_logged(every_log) + captured.out + captured.err
    everything += "".join(r.detail for r in results)
    assert "SECRETTOKEN" not in everything


@pytest.mark.parametrize(
    ("case", "level"),
    [
        pytest.param("restored-wif", logging.WARNING, id="restored-warning"),
        pytest.param("report-mode", logging.WARNING, id="reported-warning"),
        pytest.param("failed-org-policy", logging.ERROR, id="failed-error"),
    ],
)
def test_alert_record_level_follows_the_action(
    every_log: pytest.LogCaptureFixture, case: str, level: int
) -> None:
    AlertSender(webhook_url=None, alert_format="json").send(INCIDENTS[case])
    alerts = [r for r in every_log.records if getattr(r, "fields", {}).get("alert")]
    assert [r.levelno for r in alerts] == [level]


def test_no_channels_still_logs_the_incident() -> None:
    results = AlertSender(webhook_url=None, alert_format="json").send(
        INCIDENTS["restored-wif"]
    )
    assert [(r.channel, r.ok) for r in results] == [("log", True)]


def test_oversized_incident_is_still_delivered(receiver: WebhookReceiver) -> None:
    results = sender_for(receiver.url + SECRET_PATH).send(huge())
    assert results[-1].ok
    assert len(receiver.wait_for(1)[0].payload["blocks"]) <= SLACK_BLOCK_LIMIT


def test_repr_hides_the_webhook_url() -> None:
    sender = sender_for("https://hooks.slack.com" + SECRET_PATH)
    assert "SECRETTOKEN" not in repr(sender)
    assert "hooks.slack.com" not in repr(sender)


def test_unknown_alert_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="WATCHDOG_ALERT_FORMAT"):
        AlertSender(webhook_url=None, alert_format="teams")


# --- Pub/Sub, through Google's emulator -------------------------------------------


def pull_some(subscriber: Any, subscription: str) -> list[Any]:
    """Pull until something arrives; the emulator may answer a pull with nothing."""
    for _ in range(20):
        response = subscriber.pull(
            subscription=subscription, max_messages=5, timeout=10
        )
        if response.received_messages:
            return list(response.received_messages)
    return []


def test_alert_is_published_to_the_topic(
    pubsub_emulator: str, monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    from google.cloud import pubsub_v1

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator)
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    suffix = uuid.uuid4().hex[:8]
    topic = publisher.topic_path("demo-project", f"alerts-{suffix}")
    subscription = subscriber.subscription_path("demo-project", f"alerts-{suffix}")
    publisher.create_topic(name=topic, timeout=10)
    subscriber.create_subscription(name=subscription, topic=topic, timeout=10)
    # The webhook is down: Pub/Sub must be delivered all the same.
    sender = sender_for(
        f"http://127.0.0.1:{closed_port}{SECRET_PATH}", "json", topic=topic
    )
    try:
        results = sender.send(INCIDENTS["restored-wif"])
        received = pull_some(subscriber, subscription)
    finally:
        sender.close()
        subscriber.close()
    assert [(r.channel, r.ok) for r in results] == [
        ("log", True),
        ("webhook (json)", False),
        (f"pubsub ({topic})", True),
    ]
    [message] = received
    assert json.loads(message.message.data) == render_json(INCIDENTS["restored-wif"])
    assert message.message.attributes["action"] == "restored"


def test_many_changed_roles_are_cut_with_a_count() -> None:
    added = next(
        line for line in render_text(huge()).splitlines() if line.startswith("added:")
    )
    assert added.endswith("… and 490 more roles")


def test_missing_topic_gives_a_failed_result(
    pubsub_emulator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator)
    topic = f"projects/demo-project/topics/never-created-{uuid.uuid4().hex[:8]}"
    sender = AlertSender(webhook_url=None, alert_format="json", topic=topic, timeout=5)
    try:
        results = sender.send(INCIDENTS["restored-wif"])
    finally:
        sender.close()
    assert (results[-1].ok, results[-1].detail.split(":")[0]) == (False, "NotFound")


# --- memory: suppressed repeats, escalations, recoveries ---------------------------

RECOVERY = Recovery(
    service=SERVICE,
    problem=ORG_POLICY_ERROR,
    broken_since=datetime(2025, 3, 4, 10, 26, 16, tzinfo=UTC),
    recovered_at=DETECTED,
    checks=38,
    fixed_by="the watchdog restored it: added allUsers back on tick",
    trigger="tick",
    fingerprint="policy rejected: constraints/iam.allowedPolicyMemberDomains",
)
ESCALATED = restored(
    escalation=Escalation(
        actor=GITHUB,
        restores=3,
        first_at=datetime(2025, 3, 4, 9, 3, 16, tzinfo=UTC),
        tools=("Terraform",),
    )
)
REPEATED = restored(
    action=Action.FAILED,
    error=ORG_POLICY_ERROR,
    probe=None,
    suppressed=True,
    repeat="failing for 37 min, 38 checks",
)


def test_recovery_headline_says_how_long_and_what_fixed_it() -> None:
    assert render_text(RECOVERY).splitlines()[0] == (
        f"public-api ({SERVICE.full}): recovered after 37 min (38 checks found it "
        "broken) — the watchdog restored it: added allUsers back on tick"
    )


@pytest.mark.parametrize("rendering", RENDERINGS, ids=str)
def test_every_rendering_of_a_recovery_names_service_problem_and_fix(
    rendering: str,
) -> None:
    rendered = RENDERINGS[rendering](RECOVERY)  # type: ignore[arg-type]
    for fact in (SERVICE.full, "recovered", "37 min", "constraints/iam.", "restored"):
        assert fact in rendered


def test_recovery_has_its_own_slack_header_and_json_kind() -> None:
    header = render_slack(RECOVERY)["blocks"][0]["text"]["text"]
    assert header == "Public access recovered: public-api"
    document = render_json(RECOVERY)
    assert (document["kind"], document["action"]) == ("recovery", "recovered")
    assert document["broken_seconds"] == 37 * 60
    assert document["checks"] == 38


def test_escalation_headline_names_the_origin_the_count_and_the_fix() -> None:
    first = render_text(ESCALATED).splitlines()[0]
    assert first.startswith(
        "repo:example-org/infra:ref:refs/heads/main (workload identity pool "
        "github-pool, project 123456789012) keeps removing allUsers from public-api"
    )
    assert "(3 times in 2 h, via Terraform): fix it at the source" in first
    assert "google_cloud_run_v2_service_iam_policy/binding" in first


@pytest.mark.parametrize("rendering", RENDERINGS, ids=str)
def test_every_rendering_of_an_escalation_says_keeps_removing(rendering: str) -> None:
    assert "keeps removing allUsers" in RENDERINGS[rendering](ESCALATED)


def test_escalation_json_carries_the_fight() -> None:
    document = render_json(ESCALATED)
    assert document["kind"] == "escalation"
    assert document["escalation"] == {
        "actor": GITHUB,
        "restores": 3,
        "first_at": "2025-03-04T09:03:16Z",
        "tools": ["Terraform"],
    }


def test_suppressed_incident_is_logged_at_its_level_and_not_sent(
    receiver: WebhookReceiver, every_log: pytest.LogCaptureFixture
) -> None:
    results = sender_for(receiver.url + SECRET_PATH).send(REPEATED)
    assert [r.channel for r in results] == ["log"]
    assert receiver.alerts == []
    records = [r for r in every_log.records if "suppressed" in getattr(r, "fields", {})]
    assert [r.levelno for r in records] == [logging.ERROR]
    fields = records[0].fields  # type: ignore[attr-defined]
    assert (fields["suppressed"], fields["alert"]) == (True, False)
    assert "failing for 37 min, 38 checks" in records[0].getMessage()


def test_recovery_is_delivered_and_logged_at_info(
    receiver: WebhookReceiver, every_log: pytest.LogCaptureFixture
) -> None:
    results = sender_for(receiver.url + SECRET_PATH, "json").send(RECOVERY)
    assert [r.ok for r in results] == [True, True]
    assert receiver.wait_for(1)[0].payload["kind"] == "recovery"
    logged = [r for r in every_log.records if getattr(r, "fields", {}).get("alert")]
    assert [r.levelno for r in logged] == [logging.INFO]


# --- the webhook URL never leaks, in any spelling or cut --------------------------

SECRET_MARKER = "zzSECRET"
SLACK_LIKE_PATH = f"/services/T0AAAAAAA/B0BBBBBBB/{SECRET_MARKER}qqqqqqqqqqqqqqqq"


class _ScriptedHandler(BaseHTTPRequestHandler):
    server: ScriptedWebhook
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        script = self.server
        script.attempts += 1
        if script.hang:
            # Hold the answer until the test ends: the client's read times out.
            script.released.wait(10)
            self.close_connection = True
            return
        body = script.answer(self.path).encode("utf-8")
        self.send_response(script.status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if script.location:
            self.send_header("Location", script.location)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class ScriptedWebhook(ThreadingHTTPServer):
    """A webhook on loopback that answers every POST the way a test sets it up.

    The sandbox receiver answers failures with a fixed body; these tests need a
    body that echoes the request path, a redirect, or no answer at all.
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        self.status = 200
        self.answer: Callable[[str], str] = lambda path: "ok"
        self.location = ""
        self.hang = False
        self.attempts = 0
        self.released = threading.Event()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def scripted() -> Iterator[ScriptedWebhook]:
    server = ScriptedWebhook()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.released.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def assert_nowhere(
    marker: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    results: list[DeliveryResult],
) -> None:
    """`marker` is in no record, JSON line, stdout, stderr or result."""
    captured = capsys.readouterr()
    places = {
        "log": everything_logged(caplog),
        "stdout": captured.out,
        "stderr": captured.err,
        "results": repr(results),
    }
    assert {place: marker in text for place, text in places.items()} == dict.fromkeys(
        places, False
    )


def _padded(base: str, path: str) -> str:
    # Long enough that the old cut-then-redact cut the URL in the middle.
    return "x" * 100 + path + "y" * 100


def _json_escaped_slashes(base: str, path: str) -> str:
    return json.dumps({"error": f"no such hook: {base}{path}"}).replace("/", "\\/")


def _decoded(base: str, path: str) -> str:
    return f"no such hook: {base}{unquote(path)}"


def _unicode_escaped(base: str, path: str) -> str:
    escaped = json.dumps({"error": f"no such hook: {base}{unquote(path)}"})
    return escaped.replace("/", "\\/")


ECHOES = [
    pytest.param(SLACK_LIKE_PATH, _padded, id="path-padded-in-a-long-body"),
    pytest.param(SLACK_LIKE_PATH, _json_escaped_slashes, id="json-escaped-slashes"),
    pytest.param(
        "/services/T0AAAAAAA/B0BBBBBBB/zzSECRET%2Fqqqqqqqq",
        _decoded,
        id="percent-encoded-slash-echoed-decoded",
    ),
    pytest.param(
        "/services/T0AAAAAAA/B0BBBBBBB/zzSECRETé-qqqqqqqq",
        _decoded,
        id="non-ascii-echoed-decoded",
    ),
    pytest.param(
        "/services/T0AAAAAAA/B0BBBBBBB/zzSECRETé-qqqqqqqq",
        _unicode_escaped,
        id="non-ascii-echoed-unicode-escaped",
    ),
]


@pytest.mark.parametrize(("path", "echo"), ECHOES)
def test_error_body_echoing_the_url_is_never_logged_or_returned(
    scripted: ScriptedWebhook,
    every_log: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    path: str,
    echo: Callable[[str, str], str],
) -> None:
    scripted.status = 500
    scripted.answer = lambda received: echo(scripted.base, received)
    results = sender_for(scripted.base + path).send(INCIDENTS["restored-wif"])
    assert results[-1].detail == "answered 500 Internal Server Error (4 attempts)"
    assert_nowhere(SECRET_MARKER, every_log, capsys, results)


def test_long_invalid_url_is_reported_without_its_value(
    every_log: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "http://127.0.0.1:99999/x/" + "S" * 470 + SECRET_MARKER
    results = sender_for(url).send(INCIDENTS["restored-wif"])
    assert (results[-1].ok, results[-1].detail) == (
        False,
        "invalid webhook URL (value not shown); nothing was sent",
    )
    assert_nowhere(SECRET_MARKER, every_log, capsys, results)
    assert_nowhere("SSSSSSSS", every_log, capsys, results)


def test_unreachable_webhook_says_refused_and_how_many_attempts(
    closed_port: int,
    every_log: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{closed_port}{SLACK_LIKE_PATH}"
    results = sender_for(url).send(INCIDENTS["restored-wif"])
    assert results[-1].detail == "connection refused (4 attempts)"
    assert_nowhere(SECRET_MARKER, every_log, capsys, results)


def test_read_timeout_is_reported_as_a_read_timeout(
    scripted: ScriptedWebhook,
    every_log: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scripted.hang = True
    sender = sender_for(scripted.base + SLACK_LIKE_PATH, timeout=0.2)
    results = sender.send(INCIDENTS["restored-wif"])
    sender.close()
    assert results[-1].detail == (
        "read timeout: no answer within 0.2 s; the alert may have arrived (2 attempts)"
    )
    assert_nowhere(SECRET_MARKER, every_log, capsys, results)


def test_redirect_is_not_followed_and_not_called_a_retry(
    scripted: ScriptedWebhook,
    every_log: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scripted.status = 302
    scripted.location = "https://elsewhere.example/" + SECRET_MARKER
    results = sender_for(scripted.base + SLACK_LIKE_PATH).send(
        INCIDENTS["restored-wif"]
    )
    assert (results[-1].ok, results[-1].detail) == (
        False,
        "answered 302 Found, a redirect: not followed, since it would send the "
        "alert somewhere not configured (1 attempt)",
    )
    assert scripted.attempts == 1
    assert_nowhere(SECRET_MARKER, every_log, capsys, results)


def test_retried_status_counts_every_attempt(receiver: WebhookReceiver) -> None:
    receiver.fail_next(100, 503)
    results = sender_for(receiver.url + SECRET_PATH).send(INCIDENTS["restored-wif"])
    assert results[-1].detail == "answered 503 Service Unavailable (4 attempts)"
    assert receiver.attempts == 4


def test_success_names_the_status_and_its_phrase(receiver: WebhookReceiver) -> None:
    results = sender_for(receiver.url + SECRET_PATH).send(INCIDENTS["restored-wif"])
    assert results[-1].detail == "answered 200 OK (1 attempt)"


def _spellings_of(url: str) -> list[str]:
    path = urlsplit(url).path
    return [
        url,
        path,
        requote_uri(path),
        requote_uri(path).lower(),
        unquote(path),
        quote(unquote(path), safe=""),
        json.dumps(unquote(path)).replace("/", "\\/"),
        url[: len(url) - 5],  # cut at the end, as a truncating logger would
        "…" + path[20:],  # cut at the start
    ]


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://hooks.example" + SLACK_LIKE_PATH, id="slack-like"),
        pytest.param(
            "https://hooks.example/v1/spaces/AAAA/messages?key=k&token="
            f"{SECRET_MARKER}%2Fé-qqqqqqqq",
            id="chat-like-query",
        ),
    ],
)
def test_urllib3_records_are_scrubbed_in_every_spelling(
    every_log: pytest.LogCaptureFixture, url: str
) -> None:
    sender_for(url)  # installs the scrubber on urllib3's loggers
    urllib3_log = logging.getLogger("urllib3.connectionpool")
    for spelling in _spellings_of(url):
        urllib3_log.warning("Retrying (Retry(total=3)) after error: %s", spelling)
    assert SECRET_MARKER.lower() not in everything_logged(every_log).lower()


# --- Google Chat: caller-controlled text is never markup ---------------------------

MENTION_ALL = "<users/all>"
INJECTED: dict[str, Incident | Recovery] = {
    "user-agent": restored(change=replace(WIF_CHANGE, user_agent=MENTION_ALL)),
    "wif-subject": restored(
        change=replace(
            WIF_CHANGE,
            delegation=(GITHUB.replace("refs/heads/main", MENTION_ALL),),
        )
    ),
    "actor": restored(change=replace(WIF_CHANGE, actor=f"user:{MENTION_ALL}")),
    "member": restored(drift=Drift(missing=("allUsers", f"user:{MENTION_ALL}"))),
    "status-message": restored(
        change=replace(DENIED_CHANGE, status_message=f"denied {MENTION_ALL}")
    ),
    "probe-detail": restored(
        probe=Probe(ProbeResult.UNREACHABLE, detail=MENTION_ALL, seconds=0.1)
    ),
    "error": restored(action=Action.FAILED, error=f"refused {MENTION_ALL}"),
    "escalation-actor": restored(
        escalation=Escalation(
            actor=MENTION_ALL,
            restores=3,
            first_at=datetime(2025, 3, 4, 9, 3, 16, tzinfo=UTC),
            tools=(MENTION_ALL,),
        )
    ),
    "recovery-fix": replace(RECOVERY, fixed_by=f"fixed by {MENTION_ALL}"),
}


@pytest.mark.parametrize("field", INJECTED, ids=str)
def test_chat_shows_a_mention_in_a_caller_field_as_text(field: str) -> None:
    text = render_chat(INJECTED[field])["text"]
    assert "<" not in text
    assert ">" not in text
    assert "\N{SINGLE LEFT-POINTING ANGLE QUOTATION MARK}users/all" in text


@pytest.mark.parametrize(
    "markup",
    [
        pytest.param("*bold*", id="bold"),
        pytest.param("_italic_", id="italic"),
        pytest.param("~strike~", id="strike"),
        pytest.param("`code`", id="code"),
        pytest.param("```block```", id="block"),
        pytest.param("<https://evil.example|click>", id="link"),
        pytest.param("[click](https://evil.example)", id="markdown-link"),
    ],
)
def test_chat_neutralises_markup_in_caller_fields(markup: str) -> None:
    incident = restored(change=replace(WIF_CHANGE, caller_ip=markup))
    line = next(
        line
        for line in render_chat(incident)["text"].splitlines()
        if line.startswith("from: ")
    )
    assert not set(line) & set("*_~`<>[]")


def test_chat_keeps_a_caller_line_break_on_its_line() -> None:
    incident = restored(
        change=replace(WIF_CHANGE, caller_ip="203.0.113.77\nwho: someone else")
    )
    lines = render_chat(incident)["text"].splitlines()
    assert [line.split(":")[0] for line in lines].count("who") == 1


def test_chat_leaves_the_watchdogs_own_words_alone() -> None:
    text = render_chat(ESCALATED)["text"]
    assert "google_cloud_run_v2_service_iam_policy/binding" in text


def test_chat_escaping_keeps_the_cut_marker_readable() -> None:
    incident = restored(change=replace(DENIED_CHANGE, status_message="_" * 500))
    assert "more characters]" in render_chat(incident)["text"]


def test_plain_text_and_slack_keep_the_exact_values() -> None:
    incident = INJECTED["user-agent"]
    assert f"via {MENTION_ALL}" in render_text(incident)
    assert "&lt;users/all&gt;" in json.dumps(render_slack(incident))


# --- what the on-call engineer reads next -----------------------------------------

TEXT_RENDERINGS = ("text", "slack", "chat")
FAILED = INCIDENTS["failed-org-policy"]
HUNDRED_MINUTES = datetime(2025, 3, 4, 9, 23, 16, tzinfo=UTC)


@pytest.mark.parametrize("rendering", TEXT_RENDERINGS, ids=str)
def test_recovery_says_its_health_and_who_are_not_recorded(rendering: str) -> None:
    rendered = RENDERINGS[rendering](RECOVERY)  # type: ignore[arg-type]
    assert "who: " in rendered or "*who:*" in rendered
    assert "whether the service answers is unknown here" in rendered
    assert "names who changed it, when known" in rendered


def test_recovery_json_has_null_actor_and_probe_rather_than_a_guess() -> None:
    document = render_json(RECOVERY)
    assert (document["actor"], document["probe"]) == (None, None)


def test_recovery_shows_the_kind_of_problem() -> None:
    kind = "kind: policy rejected: constraints/iam.allowedPolicyMemberDomains"
    assert kind in render_text(RECOVERY).splitlines()


@pytest.mark.parametrize("rendering", RENDERINGS, ids=str)
def test_escalation_says_later_restores_are_logged_not_paged(rendering: str) -> None:
    rendered = RENDERINGS[rendering](ESCALATED)
    assert "the watchdog keeps restoring public access on every check" in rendered
    assert "only logged, not paged, until it has been quiet for a day" in rendered


@pytest.mark.parametrize("rendering", RENDERINGS, ids=str)
@pytest.mark.parametrize("case", ["failed-org-policy", "report-mode"], ids=str)
def test_unresolved_drift_says_when_it_is_checked_and_paged_again(
    rendering: str, case: str
) -> None:
    rendered = RENDERINGS[rendering](INCIDENTS[case])
    assert "checks again every minute and on each audit event" in rendered
    assert "when it recovers, or as a daily reminder" in rendered


def test_failure_says_the_restore_is_tried_again_on_each_check() -> None:
    assert "and tries the restore again; you are paged again only when the cause " in (
        render_text(FAILED)
    )


def test_report_mode_says_a_changed_drift_pages_again() -> None:
    assert "only when the drift changes" in render_text(INCIDENTS["report-mode"])


def test_restore_has_no_next_step() -> None:
    assert render_json(INCIDENTS["restored-wif"])["next"] is None
    assert "\nnext: " not in render_text(INCIDENTS["restored-wif"])


@pytest.mark.parametrize("rendering", RENDERINGS, ids=str)
@pytest.mark.parametrize(
    "probe",
    [None, Probe(ProbeResult.SKIPPED)],
    ids=["absent", "skipped"],
)
def test_failure_without_a_probe_does_not_imply_the_service_answers(
    rendering: str, probe: Probe | None
) -> None:
    rendered = RENDERINGS[rendering](replace(FAILED, probe=probe))
    assert "service not probed: whether it answers is unknown" in rendered


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(lambda i: render_text(i).splitlines()[0], id="text"),
        pytest.param(
            lambda i: render_slack(i)["blocks"][1]["text"]["text"], id="slack"
        ),
        pytest.param(lambda i: render_chat(i)["text"].splitlines()[0], id="chat"),
        pytest.param(lambda i: render_json(i)["summary"], id="json"),
    ],
)
def test_failure_headline_leads_with_service_and_constraint(
    first: Callable[[Incident], str],
) -> None:
    headline = first(FAILED)
    assert headline.startswith(
        "public-api: NOT restored: blocked by org policy constraints/iam."
    )
    assert SERVICE.full not in headline


@pytest.mark.parametrize("rendering", TEXT_RENDERINGS, ids=str)
def test_failure_puts_the_resource_path_on_its_own_line(rendering: str) -> None:
    rendered = RENDERINGS[rendering](FAILED)
    assert f"resource:{'*' if rendering == 'slack' else ''} {SERVICE.full}" in rendered


def test_failure_json_names_the_cause() -> None:
    assert render_json(FAILED)["cause"] == (
        "blocked by org policy constraints/iam.allowedPolicyMemberDomains"
    )


def test_failure_cause_without_a_constraint_names_the_service_short() -> None:
    error = (
        f"writing the IAM policy of {SERVICE.full}: the watchdog's identity was "
        "refused; it needs run.services.setIamPolicy on the service"
    )
    first = render_text(replace(FAILED, error=error)).splitlines()[0]
    assert first.startswith(
        "public-api: NOT restored: writing the IAM policy of public-api: the "
        "watchdog's identity was refused"
    )


def test_failure_headline_keeps_a_constraint_named_late_in_a_long_error() -> None:
    error = f"writing the IAM policy of {SERVICE.full}: " + "x" * 5000
    first = render_text(
        replace(FAILED, error=error + " (constraints/iam.allowedPolicyMemberDomains)")
    ).splitlines()[0]
    assert "blocked by org policy constraints/iam.allowedPolicyMemberDomains" in first
    assert len(first) < 400


def test_oversized_failure_keeps_every_limit() -> None:
    incident = replace(huge(), action=Action.FAILED, probe=None)
    chat = render_chat(incident)["text"]
    assert len(chat) <= CHAT_TEXT_LIMIT
    assert chat.startswith("public-api: NOT restored: ")
    slack = render_slack(incident)
    assert all(len(text) <= SLACK_SECTION_LIMIT for text in _slack_texts(slack))
    assert len(render_json(incident)["cause"]) <= 200


def test_an_endless_constraint_name_is_cut() -> None:
    error = "refused: constraints/" + "x" * 5000
    assert len(render_json(replace(FAILED, error=error))["cause"]) <= 200


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        pytest.param(0.4, "0 s", id="under-a-second"),
        pytest.param(59.9, "59 s", id="under-a-minute"),
        pytest.param(60, "1 min", id="a-minute"),
        pytest.param(37 * 60 + 59, "37 min", id="minutes"),
        pytest.param(3600, "1 h", id="an-hour"),
        pytest.param(100 * 60, "1 h 40 min", id="100-min"),
        pytest.param(26 * 3600 + 5 * 60, "1 day 2 h", id="a-day-and-more"),
        pytest.param(3 * 86400, "3 days", id="days"),
    ],
)
def test_durations_show_two_units_from_an_hour_up(seconds: float, words: str) -> None:
    assert describe_span(timedelta(seconds=seconds)) == words


@pytest.mark.parametrize("rendering", RENDERINGS, ids=str)
def test_recovery_after_100_minutes_says_1_h_40_min(rendering: str) -> None:
    recovery = replace(RECOVERY, broken_since=HUNDRED_MINUTES)
    rendered = RENDERINGS[rendering](recovery)  # type: ignore[arg-type]
    assert "recovered after 1 h 40 min" in rendered


def test_escalation_span_says_1_h_40_min() -> None:
    assert ESCALATED.escalation is not None
    escalation = replace(ESCALATED.escalation, first_at=HUNDRED_MINUTES)
    first = render_text(replace(ESCALATED, escalation=escalation)).splitlines()[0]
    assert "(3 times in 1 h 40 min, via Terraform)" in first


def test_change_time_relative_to_detection_uses_two_units() -> None:
    change = replace(WIF_CHANGE, time=HUNDRED_MINUTES)
    text = render_text(restored(change=change))
    assert "(1 h 40 min before detection)" in text


def test_a_service_that_could_not_be_read_is_not_called_in_sync() -> None:
    blind = Incident(
        service=ServiceName.parse(
            "projects/example-project/locations/europe-west1/services/public-api"
        ),
        drift=Drift(),
        action=Action.FAILED,
        detected_at=datetime(2025, 3, 4, 11, 3, 16, tzinfo=UTC),
        trigger="tick",
        error="reading service public-api: PERMISSION_DENIED: run.services.get",
        fingerprint="permission denied",
    )
    text = render_text(blind)
    assert text.startswith("public-api: NOT CHECKED: ")
    assert "is as desired" not in text.replace(
        "whether the invoker policy is as desired is unknown", ""
    )
    assert "who:" not in text
    assert render_slack(blind)["blocks"][0]["text"]["text"].startswith(
        "Public access NOT CHECKED"
    )
