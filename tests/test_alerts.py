"""Alert renderings: what each channel shows, within its limits, escaped."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.alert_samples import (
    DENIED_CHANGE,
    DEPLOYER,
    ESCALATED,
    GITHUB,
    INCIDENTS,
    ORG_POLICY_ERROR,
    RECOVERY,
    SERVICE,
    TIMINGS,
    WIF_CHANGE,
    huge,
    restored,
)
from watchdog.alerts import (
    CHAT_TEXT_LIMIT,
    SLACK_BLOCK_LIMIT,
    SLACK_HEADER_LIMIT,
    SLACK_SECTION_LIMIT,
    render_chat,
    render_json,
    render_slack,
    render_text,
)
from watchdog.incidents import describe_span
from watchdog.model import (
    Action,
    Drift,
    Escalation,
    Incident,
    Probe,
    ProbeResult,
    Recovery,
    ServiceName,
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


# --- memory: suppressed repeats, escalations, recoveries ---------------------------


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
