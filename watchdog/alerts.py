"""One incident, many renderings: what an alert says, in each channel's form.

The renderings are pure functions of an `Incident`: plain text for a person at
3 a.m., Slack Block Kit, Google Chat, and a generic JSON object. Chat and Slack
read markup and mentions in text, so every caller-controlled field (a member, a
principal, a user agent, an API error) is escaped for them; "<users/all>" in a
user agent must not notify a whole space. The essentials (service, what changed,
what the watchdog did, whether the service answers) come first, so a cut message
still says what matters; every field that can grow (member lists, user agents,
errors, delegation chains) is cut with a count, since chat webhooks reject an
oversized message whole (PITFALLS 14).

Besides incidents there are recoveries (a problem alerted earlier is gone) and
escalations (an incident whose restore is one of several undoing the same
identity's change); watchdog.incidents decides which to send. Sending them is
watchdog.alert_delivery's job.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from watchdog.audit import describe_principal
from watchdog.incidents import describe_span
from watchdog.model import (
    INVOKER_ROLE,
    Action,
    Change,
    Escalation,
    Incident,
    ProbeResult,
    Recovery,
)

Alert = Incident | Recovery

# Limits of the chat APIs (PITFALLS 14), in characters.
SLACK_HEADER_LIMIT = 150
SLACK_SECTION_LIMIT = 3000
SLACK_BLOCK_LIMIT = 50
CHAT_TEXT_LIMIT = 4096

# What one field may take in a rendering before it is cut with a count.
_TEXT_MEMBERS = 10
_JSON_MEMBERS = 100
_TEXT_FIELD = 300
_JSON_FIELD = 2000
_TEXT_HOPS = 6
_TEXT_STEPS = 20

# An org-policy constraint named in an API error, the usual cause of a refusal.
_CONSTRAINT = re.compile(r"constraints/[\w.]+")

# Steps that make up "restored in N s"; the rest (probe, attribute) come after.
_RESTORE_STEPS = ("read", "write", "verify")

_HEADERS = {
    Action.RESTORED: "Public access restored",
    Action.REPORTED: "Public access drift (report mode)",
    Action.FAILED: "Public access NOT restored",
    Action.NONE: "Public access as desired",
}


# --- small text helpers ---------------------------------------------------------


def cut(text: str, limit: int) -> str:
    """`text` within `limit` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    # The marker is at most ~35 characters; reserve room for it.
    kept = max(limit - 40, 0)
    marker = f" … [{len(text) - kept} more characters]"
    return (text[:kept] + marker)[:limit]


def _keep(text: str) -> str:
    """Caller-controlled text as it is: plain text and JSON need no escaping."""
    return text


# Google Chat reads markup in text messages (developers.google.com/workspace/chat/
# format-messages): *bold*, _italic_, ~strike~, `code` and ```blocks```, "* " or
# "- " bullets at a line start, <url|text> links and <users/ID> mentions, where
# <users/all> notifies everyone in the space; apps set to Markdown syntax also
# read [text](url) links. Chat documents no escape for text messages, so
# caller-controlled text (members, principals, user agents, API errors) gets
# look-alike characters instead: one for one, so lengths and cuts are unchanged.
# NB: a member copied from Chat then holds a look-alike, not the real "_"; the
# exact values are in the JSON rendering and the structured log record.
_CHAT_LOOKALIKES = {
    ord("<"): "\N{SINGLE LEFT-POINTING ANGLE QUOTATION MARK}",
    ord(">"): "\N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK}",
    ord("*"): "\N{ASTERISK OPERATOR}",
    ord("_"): "\N{MODIFIER LETTER LOW MACRON}",
    ord("~"): "\N{TILDE OPERATOR}",
    ord("`"): "\N{MODIFIER LETTER GRAVE ACCENT}",
    ord("["): "\N{FULLWIDTH LEFT SQUARE BRACKET}",
    ord("]"): "\N{FULLWIDTH RIGHT SQUARE BRACKET}",
    # A line break in a caller's value would start a line of its own: a bullet,
    # a code block, or a fake "who:" line.
    **{code: " " for code in (*range(32), 0x7F, 0x85, 0x2028, 0x2029)},
}


def _escape_chat(text: str) -> str:
    """Caller-controlled text that Google Chat shows as it is, never as markup."""
    escaped = text.translate(_CHAT_LOOKALIKES)
    # "- " only makes a bullet at a line start, where an escalation's actor sits.
    if escaped.startswith("- "):
        escaped = "\N{HYPHEN}" + escaped[1:]
    return escaped


Quote = Callable[[str], str]


def _list(
    members: Sequence[str], limit: int, quote: Quote, noun: str = "members"
) -> str:
    """Members joined by commas, the tail replaced by a count."""
    shown = [cut(quote(m), _TEXT_FIELD) for m in members[:limit]]
    text = ", ".join(shown)
    if len(members) > limit:
        text += f" … and {len(members) - limit} more {noun}"
    return text


def _seconds(value: float) -> str:
    # Steps against a nearby API take milliseconds; "0 s" would hide them.
    if value < 1:
        return f"{value * 1000:.0f} ms"
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{text} s"


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _when(moment: datetime) -> str:
    return _utc(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return _utc(moment).astimezone(UTC).isoformat().replace("+00:00", "Z")


def _relative(change_time: datetime, detected_at: datetime) -> str:
    """How long before (or after) detection a change was made."""
    delta = _utc(detected_at) - _utc(change_time)
    side = "before" if delta >= timedelta(0) else "after"
    return f"{describe_span(abs(delta))} {side} detection"


def describe_user_agent(user_agent: str) -> str:
    """The tool behind a user agent, e.g. "Terraform/1.7.5" or "gcloud (...)"."""
    tokens = user_agent.split()
    for token in tokens:
        if token.startswith("Terraform/"):
            return token.rstrip(",")
        if token.lower().startswith("pulumi"):
            return token.rstrip(",")
    for token in tokens:
        if token.startswith("command/gcloud."):
            return f"gcloud ({token.removeprefix('command/').rstrip(',')})"
    if "google-cloud-sdk" in user_agent or "gcloud/" in user_agent:
        return "gcloud"
    if user_agent.startswith("Mozilla/"):
        return "a web browser (likely the Cloud Console)"
    return cut(tokens[0], 80) if tokens else "an unnamed client"


# --- the facts every rendering shares --------------------------------------------
#
# Every builder takes `quote`, applied to caller-controlled text only (members,
# principals, user agents, API errors, probe details), never to the watchdog's
# own words: `_keep` for plain text, `_escape_chat` for Google Chat.


def _what(incident: Incident, quote: Quote) -> str:
    drift = incident.drift
    parts = []
    if drift.missing:
        members = _list(drift.missing, _TEXT_MEMBERS, quote)
        parts.append(f"{members} lost {INVOKER_ROLE}")
    if drift.forbidden:
        role = "it" if parts else INVOKER_ROLE
        parts.append(f"{_list(drift.forbidden, _TEXT_MEMBERS, quote)} gained {role}")
    if parts:
        return "; ".join(parts)
    if _blind(incident):
        return "whether the invoker policy is as desired is unknown"
    return "invoker policy is as desired"


def _blind(incident: Incident) -> bool:
    """The watchdog could not read the service or its policy at all."""
    return incident.action == Action.FAILED and not incident.drift


def _restore_seconds(incident: Incident) -> float | None:
    steps = [incident.timings[s] for s in _RESTORE_STEPS if s in incident.timings]
    return sum(steps) if steps else None


def _unresolved(incident: Incident) -> bool:
    """The drift is still in place: the restore failed, or report mode left it."""
    return incident.action in (Action.FAILED, Action.REPORTED)


def _probe_clause(incident: Incident, quote: Quote) -> str:
    probe = incident.probe
    if probe is None or probe.result == ProbeResult.SKIPPED:
        if _unresolved(incident):
            # Silence would read as "it answers" while the drift is in place.
            return "service not probed: whether it answers is unknown"
        return ""
    again = " again" if incident.action == Action.RESTORED else ""
    if probe.result == ProbeResult.OK:
        return f"service answers {probe.status}{again}"
    if probe.result == ProbeResult.FORBIDDEN:
        return "service still answers 403 (IAM can take minutes to propagate)"
    if probe.result == ProbeResult.ERROR:
        return f"service answers {probe.status}"
    return f"service unreachable ({cut(quote(probe.detail), 80)})"


def _fight(incident: Incident, escalation: Escalation, quote: Quote) -> str:
    """ "X keeps removing allUsers from S (3 times in 2 h, via Terraform): fix it"."""
    name = incident.service
    who = cut(quote(describe_principal(escalation.actor)), 200)
    drift = incident.drift
    if drift.missing:
        did = f"removing {_list(drift.missing, _TEXT_MEMBERS, quote)} from"
    else:
        did = f"adding {_list(drift.forbidden, _TEXT_MEMBERS, quote)} to"
    span = _utc(incident.detected_at) - _utc(escalation.first_at)
    within = (
        "in under a minute"
        if span.total_seconds() < 60
        else f"in {describe_span(span)}"
    )
    tools = ", ".join(quote(tool) for tool in escalation.tools)
    via = f", via {tools}" if tools else ""
    if "Terraform" in escalation.tools:
        source = (
            "an authoritative google_cloud_run_v2_service_iam_policy/binding resource?"
        )
    else:
        source = "whatever applies that policy: a pipeline, a script, a tool?"
    return (
        f"{who} keeps {did} {name.service} ({name.full}) "
        f"({escalation.restores} times {within}{via}): fix it at the source "
        f"({source})"
    )


def _failure_cause(incident: Incident, quote: Quote) -> str:
    """Why the restore failed, short: the org-policy constraint when one is named.

    The API error repeats the full resource name, which would spend the headline
    before the reason; here it is the short name, and the full error has a line
    of its own.
    """
    error = incident.error
    if not error:
        return "unknown error"
    if constraint := _CONSTRAINT.search(error):
        return cut(f"blocked by org policy {quote(constraint.group(0))}", 200)
    name = incident.service
    return cut(quote(error.replace(name.full, name.service)), 200)


def _headline(incident: Incident, quote: Quote) -> str:
    name = incident.service
    what = _what(incident, quote)
    if incident.action == Action.FAILED and incident.escalation is None:
        # Service and cause first: the resource path has its own line.
        verdict = "NOT CHECKED" if _blind(incident) else "NOT restored"
        first = f"{name.service}: {verdict}: {_failure_cause(incident, quote)}"
        clause = _probe_clause(incident, quote)
        return f"{first} — {what}" + (f"; {clause}" if clause else "")
    start = f"{name.service} ({name.full}): {what}"
    if incident.escalation is not None:
        start = _fight(incident, incident.escalation, quote) + f". This time: {what}"
    if incident.action == Action.RESTORED:
        took = _restore_seconds(incident)
        outcome = "restored" + (f" in {_seconds(took)}" if took is not None else "")
    elif incident.action == Action.REPORTED:
        outcome = "report mode: not changed"
    elif incident.action == Action.FAILED:
        error = cut(quote(incident.error or "unknown error"), 200)
        outcome = f"NOT restored: {error}"
    else:
        outcome = "nothing to do"
    clause = _probe_clause(incident, quote)
    return f"{start} — {outcome}" + (f"; {clause}" if clause else "")


def headline(incident: Incident) -> str:
    """The first line of every rendering: service, drift, action, answer."""
    return _headline(incident, _keep)


def _chain(change: Change, quote: Quote) -> str:
    hops = [describe_principal(p) for p in change.delegation]
    if change.actor:
        hops.append(describe_principal(change.actor))
    hops = [cut(quote(h), 200) for h in hops]
    if len(hops) > _TEXT_HOPS:
        # Keep the origin first and the final identity last; count the middle.
        hops = [*hops[:2], f"… {len(hops) - 4} more hops …", *hops[-2:]]
    return " → ".join(hops)


def _who(incident: Incident, quote: Quote) -> list[tuple[str, str]]:
    change = incident.change
    attribution = (
        cut(quote(incident.attribution), _TEXT_FIELD) if incident.attribution else ""
    )
    if change is None and _blind(incident):
        return []  # nothing changed that the watchdog could see
    if change is None:
        facts = [("who", "not yet known (no audit entry found yet)")]
        if attribution:
            facts.append(("attribution", attribution))
        return facts
    actor = cut(quote(describe_principal(change.actor)), 200)
    facts = []
    if change.failed:
        # A failed call changed nothing (PITFALLS 7): it is context, not a culprit.
        status = cut(quote(change.status_message or "no reason given"), 200)
        method = cut(quote(change.method), 200)
        facts.append(
            (
                "who",
                f"not known; the last attempt was DENIED: {actor} called "
                f"{method} and it failed ({status}), so it changed nothing",
            )
        )
    else:
        facts.append(("who", actor))
    if change.delegation:
        facts.append(("through", _chain(change, quote)))
    if change.time is not None:
        facts.append(
            (
                "when",
                f"{_when(change.time)} "
                f"({_relative(change.time, incident.detected_at)})",
            )
        )
    where = cut(quote(change.caller_ip), 100) if change.caller_ip else "unknown address"
    if change.user_agent:
        # Quoted before it is read: its own cut marker stays ours.
        where += f" via {describe_user_agent(quote(change.user_agent))}"
    facts.append(("from", where))
    method = change.method + (
        f" (insert id {change.insert_id})" if change.insert_id else ""
    )
    facts.append(("method", cut(quote(method), _TEXT_FIELD)))
    for verb, delta in (("removed", change.removed), ("added", change.added)):
        if delta:
            roles = "; ".join(
                f"{quote(role)}: {_list(members, _TEXT_MEMBERS, quote)}"
                for role, members in list(delta.items())[:_TEXT_MEMBERS]
            )
            roles = cut(roles, _TEXT_FIELD * 3)
            if len(delta) > _TEXT_MEMBERS:
                roles += f" … and {len(delta) - _TEXT_MEMBERS} more roles"
            facts.append((verb, roles))
    if attribution:
        facts.append(("attribution", attribution))
    return facts


def _health(incident: Incident, quote: Quote) -> list[tuple[str, str]]:
    probe = incident.probe
    if probe is None:
        if _unresolved(incident):
            return [("health", "not probed: whether the service answers is unknown")]
        if incident.action == Action.RESTORED:
            return [("health", "not probed")]
        return []
    answer = probe.result.value
    if probe.status is not None:
        answer = f"{probe.status} ({answer})"
    text = f"{answer} in {_seconds(probe.seconds)}"
    if probe.detail:
        text += f": {cut(quote(probe.detail), _TEXT_FIELD)}"
    if probe.result == ProbeResult.FORBIDDEN and incident.action == Action.RESTORED:
        text += (
            ". The policy read back is restored; IAM can take minutes to propagate "
            "(typically about 2, sometimes 7 or more), so a 403 right after a "
            "restore is expected. No further action was taken."
        )
    return [("health", text)]


# What happens after this alert, as watchdog.incidents decides it. NB: the tick
# schedule (Terraform), the reminder interval and the escalation window are
# settings that no Incident carries, so their defaults are named here; a
# deployment that changes them makes these words wrong. Carrying them on the
# Incident/Escalation (watchdog.model) would fix it.
_NEXT_CHECK = "the watchdog checks again every minute and on each audit event"
_NEXT_PAGE = (
    "you are paged again only when the {what} changes, when it recovers, or as a "
    "daily reminder; checks in between are logged only"
)
_QUIET_WINDOW = "for a day"  # the default, when an escalation does not say


def _next(incident: Incident) -> str:
    """What the watchdog does after this alert, and when it pages again; "" if n/a."""
    if incident.escalation is not None:
        window = incident.escalation.quiet_for
        quiet = f"for {describe_span(window)}" if window else _QUIET_WINDOW
        return (
            "the watchdog keeps restoring public access on every check, but later "
            "restores caused by this identity are only logged, not paged, until it "
            f"has been quiet {quiet} (WATCHDOG_ESCALATION_WINDOW)"
        )
    if incident.action == Action.FAILED:
        page = _NEXT_PAGE.format(what="cause")
        again = (
            "tries to read it again" if _blind(incident) else "tries the restore again"
        )
        return f"{_NEXT_CHECK} and {again}; {page}"
    if incident.action == Action.REPORTED:
        page = _NEXT_PAGE.format(what="drift")
        return f"report mode changes nothing; {_NEXT_CHECK}; {page}"
    return ""


def _details(incident: Incident, quote: Quote) -> list[tuple[str, str]]:
    facts = []
    error = ("error", cut(quote(incident.error), _TEXT_FIELD * 5))
    failed = incident.action == Action.FAILED and incident.escalation is None
    if failed:
        # The headline names the service and the cause only: the full path and
        # the whole error come next, before anything else.
        facts.append(("resource", incident.service.full))
        if incident.error:
            facts.append(error)
    if incident.repeat:
        facts.append(("repeat", cut(quote(incident.repeat), _TEXT_FIELD)))
    if next_step := _next(incident):
        facts.append(("next", next_step))
    facts.extend(_who(incident, quote))
    facts.extend(_health(incident, quote))
    if not failed and len(incident.error) > 200:
        facts.append(error)
    if incident.timings:
        steps = ", ".join(
            f"{cut(quote(step), 40)} {_seconds(seconds)}"
            for step, seconds in list(incident.timings.items())[:_TEXT_STEPS]
        )
        if len(incident.timings) > _TEXT_STEPS:
            steps += f" … and {len(incident.timings) - _TEXT_STEPS} more steps"
        facts.append(("timings", steps))
    trigger = cut(quote(incident.trigger), 80)
    facts.append(
        (
            "detected",
            f"{_when(incident.detected_at)} (trigger: {trigger}; "
            f"mode: {incident.mode})",
        )
    )
    return facts


# --- recoveries ------------------------------------------------------------------


def _recovery_headline(recovery: Recovery, quote: Quote) -> str:
    name = recovery.service
    span = _utc(recovery.recovered_at) - _utc(recovery.broken_since)
    checks = f"{recovery.checks} check" + ("" if recovery.checks == 1 else "s")
    return (
        f"{name.service} ({name.full}): recovered after {describe_span(span)} "
        f"({checks} found it broken) — {cut(quote(recovery.fixed_by), 300)}"
    )


def recovery_headline(recovery: Recovery) -> str:
    """The first line of a recovery: service, how long it was broken, the fix."""
    return _recovery_headline(recovery, _keep)


# NB: a Recovery (watchdog.model) carries neither the probe result nor the audit
# attribution of the check that found the service right, so a recovery cannot
# say whether the service answers or who changed it; it says so and where to
# look instead of staying silent. When the watchdog's own restore is the fix,
# the incident of that check (logged only, `suppressed`) holds both. Carrying
# `probe` and `change` on the Recovery would let it show them.
_RECOVERY_WHO = (
    "not recorded with a recovery; the watchdog's structured log record of the "
    "same check names who changed it, when known"
)
_RECOVERY_HEALTH = (
    "not recorded with a recovery: the IAM policy is as desired, but whether the "
    "service answers is unknown here; the log record of the same check has its "
    "probe, if one ran"
)


def _recovery_details(recovery: Recovery, quote: Quote) -> list[tuple[str, str]]:
    facts = [("problem", cut(quote(recovery.problem), _TEXT_FIELD * 2))]
    if recovery.fingerprint and recovery.fingerprint != recovery.problem:
        facts.append(("kind", cut(quote(recovery.fingerprint), _TEXT_FIELD)))
    facts += [
        ("who", _RECOVERY_WHO),
        ("health", _RECOVERY_HEALTH),
        ("broken since", _when(recovery.broken_since)),
        (
            "recovered",
            f"{_when(recovery.recovered_at)} (trigger: "
            f"{cut(quote(recovery.trigger), 80)}; mode: {recovery.mode})",
        ),
    ]
    return facts


def _recovery_json(recovery: Recovery) -> dict[str, Any]:
    span = _utc(recovery.recovered_at) - _utc(recovery.broken_since)
    return {
        "kind": "recovery",
        "summary": recovery_headline(recovery),
        "service": recovery.service.full,
        "service_name": recovery.service.service,
        "project": recovery.service.project,
        "location": recovery.service.location,
        "action": "recovered",
        "mode": recovery.mode,
        "trigger": cut(recovery.trigger, _JSON_FIELD),
        "problem": cut(recovery.problem, _JSON_FIELD),
        "fingerprint": cut(recovery.fingerprint, _JSON_FIELD),
        "broken_since": _iso(recovery.broken_since),
        "recovered_at": _iso(recovery.recovered_at),
        "broken_seconds": round(span.total_seconds(), 3),
        "checks": recovery.checks,
        "fixed_by": cut(recovery.fixed_by, _JSON_FIELD),
        # Not carried by a Recovery (see _RECOVERY_WHO); null, never a guess.
        "actor": None,
        "probe": None,
    }


# --- renderings ------------------------------------------------------------------


def _lines(alert: Alert, quote: Quote) -> str:
    if isinstance(alert, Recovery):
        lines = [_recovery_headline(alert, quote)]
        facts = _recovery_details(alert, quote)
    else:
        lines = [_headline(alert, quote)]
        facts = _details(alert, quote)
    lines.extend(f"{label}: {value}" for label, value in facts)
    return "\n".join(lines)


def render_text(alert: Alert) -> str:
    """The readable summary: the headline, then who, when, from where, timings."""
    return _lines(alert, _keep)


def _escape_mrkdwn(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mrkdwn(text: str, limit: int = SLACK_SECTION_LIMIT) -> str:
    """Escaped Slack mrkdwn within `limit`, cutting the raw text as needed."""
    budget = limit
    while True:
        escaped = _escape_mrkdwn(cut(text, budget))
        if len(escaped) <= limit:
            return escaped
        budget -= len(escaped) - limit


def render_slack(alert: Alert) -> dict[str, Any]:
    """Slack Block Kit: a header, the headline, the details, the timings."""
    if isinstance(alert, Recovery):
        title = f"Public access recovered: {alert.service.service}"
        first = recovery_headline(alert)
        facts = _recovery_details(alert, _keep)
    else:
        header = _HEADERS[alert.action]
        if alert.escalation is not None:
            header = "Public access keeps being undone"
        elif _blind(alert):
            header = "Public access NOT CHECKED"
        title = f"{header}: {alert.service.service}"
        first = headline(alert)
        facts = _details(alert, _keep)
    details = [
        f"*{label}:* {_escape_mrkdwn(value)}"
        for label, value in facts
        if label != "timings"
    ]
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": cut(title, SLACK_HEADER_LIMIT)},
        },
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": _mrkdwn(first)},
        },
        {
            "type": "section",
            # Already escaped line by line; only the length is enforced here.
            "text": {
                "type": "mrkdwn",
                "text": cut("\n".join(details), SLACK_SECTION_LIMIT),
            },
        },
    ]
    timings = dict(facts).get("timings")
    if timings:
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": _mrkdwn(f"timings: {timings}")}
                ],
            }
        )
    return {
        "text": _mrkdwn(first),
        "blocks": blocks[:SLACK_BLOCK_LIMIT],
    }


def render_chat(alert: Alert) -> dict[str, Any]:
    """Google Chat: one text message within its 4,096-character limit.

    The plain text, with every caller-controlled field shown as text rather than
    read as markup or a mention (see `_escape_chat`).
    """
    return {"text": cut(_lines(alert, _escape_chat), CHAT_TEXT_LIMIT)}


def _json_list(
    name: str, members: Sequence[str], truncated: dict[str, int]
) -> list[str]:
    if len(members) > _JSON_MEMBERS:
        truncated[name] = len(members) - _JSON_MEMBERS
    return [cut(m, _JSON_FIELD) for m in members[:_JSON_MEMBERS]]


def _json_text(name: str, value: str | None, truncated: dict[str, int]) -> str | None:
    if value is None:
        return None
    if len(value) > _JSON_FIELD:
        truncated[name] = len(value) - _JSON_FIELD
    return cut(value, _JSON_FIELD)


def _json_delta(
    name: str, delta: Mapping[str, tuple[str, ...]] | None, truncated: dict[str, int]
) -> dict[str, list[str]] | None:
    if delta is None:
        return None
    if len(delta) > _JSON_MEMBERS:
        truncated[f"{name} roles"] = len(delta) - _JSON_MEMBERS
    return {
        cut(role, 200): _json_list(f"{name}.{role}", members, truncated)
        for role, members in list(delta.items())[:_JSON_MEMBERS]
    }


def _escalation_json(incident: Incident) -> dict[str, Any] | None:
    escalation = incident.escalation
    if escalation is None:
        return None
    return {
        "actor": cut(escalation.actor, _JSON_FIELD),
        "restores": escalation.restores,
        "first_at": _iso(escalation.first_at),
        "tools": [cut(tool, 200) for tool in escalation.tools[:_JSON_MEMBERS]],
    }


def render_json(alert: Alert) -> dict[str, Any]:
    """A machine-readable object with stable keys; `truncated` counts what was cut.

    `kind` tells the shapes apart: "incident", "escalation" (an incident whose
    restore is one of several undoing the same identity's change) or "recovery".
    """
    if isinstance(alert, Recovery):
        return _recovery_json(alert)
    incident = alert
    truncated: dict[str, int] = {}
    change = incident.change
    probe = incident.probe
    return {
        "kind": "incident" if incident.escalation is None else "escalation",
        "summary": headline(incident),
        "cause": (
            _failure_cause(incident, _keep)
            if incident.action == Action.FAILED
            else None
        ),
        "next": _next(incident) or None,
        "service": incident.service.full,
        "service_name": incident.service.service,
        "project": incident.service.project,
        "location": incident.service.location,
        "missing": _json_list("missing", incident.drift.missing, truncated),
        "forbidden": _json_list("forbidden", incident.drift.forbidden, truncated),
        "action": incident.action.value,
        "mode": incident.mode,
        "detected_at": _iso(incident.detected_at),
        "trigger": _json_text("trigger", incident.trigger, truncated),
        "actor": _json_text("actor", change.actor, truncated) if change else None,
        "origin": _json_text("origin", change.origin, truncated) if change else None,
        "delegation": (
            _json_list("delegation", change.delegation, truncated) if change else []
        ),
        "caller_ip": (
            _json_text("caller_ip", change.caller_ip, truncated) if change else None
        ),
        "user_agent": (
            _json_text("user_agent", change.user_agent, truncated) if change else None
        ),
        "change_time": _iso(change.time) if change else None,
        "method": _json_text("method", change.method, truncated) if change else None,
        "insert_id": (
            _json_text("insert_id", change.insert_id, truncated) if change else None
        ),
        "change_failed": change.failed if change else None,
        "status_message": (
            _json_text("status_message", change.status_message, truncated)
            if change
            else None
        ),
        "removed": _json_delta("removed", change.removed, truncated)
        if change
        else None,
        "added": _json_delta("added", change.added, truncated) if change else None,
        "attribution": _json_text("attribution", incident.attribution, truncated),
        "probe": {
            "result": probe.result.value if probe else None,
            "status": probe.status if probe else None,
            "detail": _json_text("probe.detail", probe.detail, truncated)
            if probe
            else "",
            "seconds": round(probe.seconds, 4) if probe else None,
        },
        "error": _json_text("error", incident.error, truncated),
        "timings": {
            step: round(seconds, 4) for step, seconds in incident.timings.items()
        },
        "fingerprint": _json_text("fingerprint", incident.fingerprint, truncated),
        "suppressed": incident.suppressed,
        "repeat": _json_text("repeat", incident.repeat, truncated),
        "escalation": _escalation_json(incident),
        "truncated": truncated,
    }


RENDERERS = {"slack": render_slack, "chat": render_chat, "json": render_json}
