"""One incident, many renderings, and their delivery.

The renderings are pure functions of an `Incident`: plain text for a person at
3 a.m., Slack Block Kit, Google Chat, and a generic JSON object. The essentials
(service, what changed, what the watchdog did, whether the service answers) come
first, so a cut message still says what matters; every field that can grow
(member lists, user agents, errors, delegation chains) is cut with a count, since
chat webhooks reject an oversized message whole (PITFALLS 14).

Besides incidents there are recoveries (a problem alerted earlier is gone) and
escalations (an incident whose restore is one of several undoing the same
identity's change); watchdog.incidents decides which to send. A suppressed
incident (a repeat of a problem already alerted) is written to the structured
log only, with `suppressed=true` and how long the problem has lasted.

`AlertSender` always writes one structured log record first, so log-based
alerting sees the incident even when every other channel is down; then it posts
to the webhook (with retries) and publishes to Pub/Sub. A failing channel is
logged and reported, never raised. Webhook URLs carry their credential in the
path: neither the URL nor any exception text that could contain it is logged.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from google.api_core.exceptions import GoogleAPIError
from google.auth.exceptions import GoogleAuthError
from requests.adapters import HTTPAdapter
from requests.utils import requote_uri
from urllib3.util import Retry

from watchdog.audit import describe_principal
from watchdog.config import ALERT_FORMATS
from watchdog.errors import ConfigError
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

if TYPE_CHECKING:
    from google.cloud.pubsub_v1 import PublisherClient

log = logging.getLogger(__name__)

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

# Steps that make up "restored in N s"; the rest (probe, attribute) come after.
_RESTORE_STEPS = ("read", "write", "verify")

_HEADERS = {
    Action.RESTORED: "Public access restored",
    Action.REPORTED: "Public access drift (report mode)",
    Action.FAILED: "Public access NOT restored",
    Action.NONE: "Public access as desired",
}


# --- small text helpers ---------------------------------------------------------


def _cut(text: str, limit: int) -> str:
    """`text` within `limit` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    # The marker is at most ~35 characters; reserve room for it.
    kept = max(limit - 40, 0)
    marker = f" … [{len(text) - kept} more characters]"
    return (text[:kept] + marker)[:limit]


def _list(members: Sequence[str], limit: int, noun: str = "members") -> str:
    """Members joined by commas, the tail replaced by a count."""
    shown = [_cut(m, _TEXT_FIELD) for m in members[:limit]]
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
    delta = (_utc(detected_at) - _utc(change_time)).total_seconds()
    side = "before" if delta >= 0 else "after"
    span = abs(delta)
    if span < 90:
        amount = f"{span:.0f} s"
    elif span < 90 * 60:
        amount = f"{span / 60:.0f} min"
    elif span < 48 * 3600:
        amount = f"{span / 3600:.1f} h"
    else:
        amount = f"{span / 86400:.0f} days"
    return f"{amount} {side} detection"


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
    return _cut(tokens[0], 80) if tokens else "an unnamed client"


# --- the facts every rendering shares --------------------------------------------


def _what(incident: Incident) -> str:
    drift = incident.drift
    parts = []
    if drift.missing:
        parts.append(f"{_list(drift.missing, _TEXT_MEMBERS)} lost {INVOKER_ROLE}")
    if drift.forbidden:
        role = "it" if parts else INVOKER_ROLE
        parts.append(f"{_list(drift.forbidden, _TEXT_MEMBERS)} gained {role}")
    return "; ".join(parts) or "invoker policy is as desired"


def _restore_seconds(incident: Incident) -> float | None:
    steps = [incident.timings[s] for s in _RESTORE_STEPS if s in incident.timings]
    return sum(steps) if steps else None


def _probe_clause(incident: Incident) -> str:
    probe = incident.probe
    if probe is None or probe.result == ProbeResult.SKIPPED:
        return ""
    again = " again" if incident.action == Action.RESTORED else ""
    if probe.result == ProbeResult.OK:
        return f"service answers {probe.status}{again}"
    if probe.result == ProbeResult.FORBIDDEN:
        return "service still answers 403 (IAM can take minutes to propagate)"
    if probe.result == ProbeResult.ERROR:
        return f"service answers {probe.status}"
    return f"service unreachable ({_cut(probe.detail, 80)})"


def _fight(incident: Incident, escalation: Escalation) -> str:
    """ "X keeps removing allUsers from S (3 times in 2 h, via Terraform): fix it"."""
    name = incident.service
    who = _cut(describe_principal(escalation.actor), 200)
    drift = incident.drift
    if drift.missing:
        did = f"removing {_list(drift.missing, _TEXT_MEMBERS)} from"
    else:
        did = f"adding {_list(drift.forbidden, _TEXT_MEMBERS)} to"
    span = _utc(incident.detected_at) - _utc(escalation.first_at)
    within = (
        "in under a minute"
        if span.total_seconds() < 60
        else f"in {describe_span(span)}"
    )
    via = f", via {', '.join(escalation.tools)}" if escalation.tools else ""
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


def headline(incident: Incident) -> str:
    """The first line of every rendering: service, drift, action, answer."""
    name = incident.service
    start = f"{name.service} ({name.full}): {_what(incident)}"
    if incident.escalation is not None:
        start = (
            _fight(incident, incident.escalation) + f". This time: {_what(incident)}"
        )
    if incident.action == Action.RESTORED:
        took = _restore_seconds(incident)
        outcome = "restored" + (f" in {_seconds(took)}" if took is not None else "")
    elif incident.action == Action.REPORTED:
        outcome = "report mode: not changed"
    elif incident.action == Action.FAILED:
        outcome = f"NOT restored: {_cut(incident.error or 'unknown error', 200)}"
    else:
        outcome = "nothing to do"
    clause = _probe_clause(incident)
    return f"{start} — {outcome}" + (f"; {clause}" if clause else "")


def _chain(change: Change) -> str:
    hops = [describe_principal(p) for p in change.delegation]
    if change.actor:
        hops.append(describe_principal(change.actor))
    hops = [_cut(h, 200) for h in hops]
    if len(hops) > _TEXT_HOPS:
        # Keep the origin first and the final identity last; count the middle.
        hops = [*hops[:2], f"… {len(hops) - 4} more hops …", *hops[-2:]]
    return " → ".join(hops)


def _who(incident: Incident) -> list[tuple[str, str]]:
    change = incident.change
    if change is None:
        facts = [("who", "not yet known (no audit entry found yet)")]
        if incident.attribution:
            facts.append(("attribution", _cut(incident.attribution, _TEXT_FIELD)))
        return facts
    actor = _cut(describe_principal(change.actor), 200)
    facts = []
    if change.failed:
        # A failed call changed nothing (PITFALLS 7): it is context, not a culprit.
        status = _cut(change.status_message or "no reason given", 200)
        facts.append(
            (
                "who",
                f"not known; the last attempt was DENIED: {actor} called "
                f"{change.method} and it failed ({status}), so it changed nothing",
            )
        )
    else:
        facts.append(("who", actor))
    if change.delegation:
        facts.append(("through", _chain(change)))
    if change.time is not None:
        facts.append(
            (
                "when",
                f"{_when(change.time)} "
                f"({_relative(change.time, incident.detected_at)})",
            )
        )
    where = _cut(change.caller_ip, 100) if change.caller_ip else "unknown address"
    if change.user_agent:
        where += f" via {describe_user_agent(change.user_agent)}"
    facts.append(("from", where))
    method = change.method + (
        f" (insert id {change.insert_id})" if change.insert_id else ""
    )
    facts.append(("method", _cut(method, _TEXT_FIELD)))
    for verb, delta in (("removed", change.removed), ("added", change.added)):
        if delta:
            roles = "; ".join(
                f"{role}: {_list(members, _TEXT_MEMBERS)}"
                for role, members in list(delta.items())[:_TEXT_MEMBERS]
            )
            roles = _cut(roles, _TEXT_FIELD * 3)
            if len(delta) > _TEXT_MEMBERS:
                roles += f" … and {len(delta) - _TEXT_MEMBERS} more roles"
            facts.append((verb, roles))
    if incident.attribution:
        facts.append(("attribution", _cut(incident.attribution, _TEXT_FIELD)))
    return facts


def _health(incident: Incident) -> list[tuple[str, str]]:
    probe = incident.probe
    if probe is None:
        if incident.action == Action.RESTORED:
            return [("health", "not probed")]
        return []
    answer = probe.result.value
    if probe.status is not None:
        answer = f"{probe.status} ({answer})"
    text = f"{answer} in {_seconds(probe.seconds)}"
    if probe.detail:
        text += f": {_cut(probe.detail, _TEXT_FIELD)}"
    if probe.result == ProbeResult.FORBIDDEN and incident.action == Action.RESTORED:
        text += (
            ". The policy read back is restored; IAM can take minutes to propagate "
            "(typically about 2, sometimes 7 or more), so a 403 right after a "
            "restore is expected. No further action was taken."
        )
    return [("health", text)]


def _details(incident: Incident) -> list[tuple[str, str]]:
    facts = []
    if incident.repeat:
        facts.append(("repeat", _cut(incident.repeat, _TEXT_FIELD)))
    facts.extend(_who(incident))
    facts.extend(_health(incident))
    if incident.error and len(incident.error) > 200:
        facts.append(("error", _cut(incident.error, _TEXT_FIELD * 5)))
    if incident.timings:
        steps = ", ".join(
            f"{_cut(step, 40)} {_seconds(seconds)}"
            for step, seconds in list(incident.timings.items())[:_TEXT_STEPS]
        )
        if len(incident.timings) > _TEXT_STEPS:
            steps += f" … and {len(incident.timings) - _TEXT_STEPS} more steps"
        facts.append(("timings", steps))
    facts.append(
        (
            "detected",
            f"{_when(incident.detected_at)} (trigger: {_cut(incident.trigger, 80)}; "
            f"mode: {incident.mode})",
        )
    )
    return facts


# --- recoveries ------------------------------------------------------------------


def recovery_headline(recovery: Recovery) -> str:
    """The first line of a recovery: service, how long it was broken, the fix."""
    name = recovery.service
    span = _utc(recovery.recovered_at) - _utc(recovery.broken_since)
    checks = f"{recovery.checks} check" + ("" if recovery.checks == 1 else "s")
    return (
        f"{name.service} ({name.full}): recovered after {describe_span(span)} "
        f"({checks} found it broken) — {_cut(recovery.fixed_by, 300)}"
    )


def _recovery_details(recovery: Recovery) -> list[tuple[str, str]]:
    return [
        ("problem", _cut(recovery.problem, _TEXT_FIELD * 2)),
        ("broken since", _when(recovery.broken_since)),
        (
            "recovered",
            f"{_when(recovery.recovered_at)} (trigger: "
            f"{_cut(recovery.trigger, 80)}; mode: {recovery.mode})",
        ),
    ]


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
        "trigger": _cut(recovery.trigger, _JSON_FIELD),
        "problem": _cut(recovery.problem, _JSON_FIELD),
        "fingerprint": _cut(recovery.fingerprint, _JSON_FIELD),
        "broken_since": _iso(recovery.broken_since),
        "recovered_at": _iso(recovery.recovered_at),
        "broken_seconds": round(span.total_seconds(), 3),
        "checks": recovery.checks,
        "fixed_by": _cut(recovery.fixed_by, _JSON_FIELD),
    }


# --- renderings ------------------------------------------------------------------


def render_text(alert: Alert) -> str:
    """The readable summary: the headline, then who, when, from where, timings."""
    if isinstance(alert, Recovery):
        lines = [recovery_headline(alert)]
        lines.extend(f"{label}: {value}" for label, value in _recovery_details(alert))
        return "\n".join(lines)
    incident = alert
    lines = [headline(incident)]
    lines.extend(f"{label}: {value}" for label, value in _details(incident))
    return "\n".join(lines)


def _escape_mrkdwn(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mrkdwn(text: str, limit: int = SLACK_SECTION_LIMIT) -> str:
    """Escaped Slack mrkdwn within `limit`, cutting the raw text as needed."""
    budget = limit
    while True:
        escaped = _escape_mrkdwn(_cut(text, budget))
        if len(escaped) <= limit:
            return escaped
        budget -= len(escaped) - limit


def render_slack(alert: Alert) -> dict[str, Any]:
    """Slack Block Kit: a header, the headline, the details, the timings."""
    if isinstance(alert, Recovery):
        title = f"Public access recovered: {alert.service.service}"
        first = recovery_headline(alert)
        facts = _recovery_details(alert)
    else:
        header = _HEADERS[alert.action]
        if alert.escalation is not None:
            header = "Public access keeps being undone"
        title = f"{header}: {alert.service.service}"
        first = headline(alert)
        facts = _details(alert)
    details = [
        f"*{label}:* {_escape_mrkdwn(value)}"
        for label, value in facts
        if label != "timings"
    ]
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _cut(title, SLACK_HEADER_LIMIT)},
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
                "text": _cut("\n".join(details), SLACK_SECTION_LIMIT),
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
    """Google Chat: one text message within its 4,096-character limit."""
    return {"text": _cut(render_text(alert), CHAT_TEXT_LIMIT)}


def _json_list(
    name: str, members: Sequence[str], truncated: dict[str, int]
) -> list[str]:
    if len(members) > _JSON_MEMBERS:
        truncated[name] = len(members) - _JSON_MEMBERS
    return [_cut(m, _JSON_FIELD) for m in members[:_JSON_MEMBERS]]


def _json_text(name: str, value: str | None, truncated: dict[str, int]) -> str | None:
    if value is None:
        return None
    if len(value) > _JSON_FIELD:
        truncated[name] = len(value) - _JSON_FIELD
    return _cut(value, _JSON_FIELD)


def _json_delta(
    name: str, delta: Mapping[str, tuple[str, ...]] | None, truncated: dict[str, int]
) -> dict[str, list[str]] | None:
    if delta is None:
        return None
    if len(delta) > _JSON_MEMBERS:
        truncated[f"{name} roles"] = len(delta) - _JSON_MEMBERS
    return {
        _cut(role, 200): _json_list(f"{name}.{role}", members, truncated)
        for role, members in list(delta.items())[:_JSON_MEMBERS]
    }


def _escalation_json(incident: Incident) -> dict[str, Any] | None:
    escalation = incident.escalation
    if escalation is None:
        return None
    return {
        "actor": _cut(escalation.actor, _JSON_FIELD),
        "restores": escalation.restores,
        "first_at": _iso(escalation.first_at),
        "tools": [_cut(tool, 200) for tool in escalation.tools[:_JSON_MEMBERS]],
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


_RENDERERS = {"slack": render_slack, "chat": render_chat, "json": render_json}


# --- delivery --------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryResult:
    """How one channel fared; `detail` never contains the webhook URL."""

    channel: str
    ok: bool
    detail: str = ""


def _root_cause(error: BaseException) -> str:
    """The innermost OS-level reason behind a wrapped network error."""
    found = ""
    current: BaseException | None = error
    for _ in range(10):
        if current is None:
            break
        if isinstance(current, OSError) and current.strerror:
            found = current.strerror
        nested = (
            current.__cause__ or current.__context__ or getattr(current, "reason", None)
        )
        if (
            nested is None
            and current.args
            and isinstance(current.args[0], BaseException)
        ):
            nested = current.args[0]
        current = nested if isinstance(nested, BaseException) else None
    return found or type(error).__name__


def _secret_forms(url: str) -> list[str]:
    """Every spelling of the webhook URL (or its path) that a message could hold."""
    parts = urlsplit(url)
    path_query = parts.path + (f"?{parts.query}" if parts.query else "")
    forms = {
        url,
        requote_uri(url),
        url.split("://", 1)[-1],
        parts.netloc + parts.path,
        path_query,
        requote_uri(path_query),
        parts.path,
        requote_uri(parts.path),
        parts.query,
    }
    if "@" in parts.netloc:
        forms.add(parts.netloc)
    # A bare "/" or a one-letter path would redact every message; it is no secret.
    return sorted((f for f in forms if len(f) > 2), key=len, reverse=True)


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "<webhook URL>")
    return text


class _RedactSecrets(logging.Filter):
    """Scrubs webhook URLs from urllib3's own records ("Retrying ... /services/...").

    urllib3 logs the request path of every retry at WARNING; with no handler
    configured, Python prints that to stderr, which Cloud Logging keeps.
    """

    def __init__(self) -> None:
        super().__init__()
        self._secrets: list[str] = []
        self._lock = threading.Lock()

    def add(self, secrets: Iterable[str]) -> None:
        with self._lock:
            merged = set(self._secrets) | set(secrets)
            self._secrets = sorted(merged, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self._secrets
        if secrets:
            message = record.getMessage()
            redacted = _redact(message, secrets)
            if redacted != message:
                record.msg = redacted
                record.args = None
        return True


_URLLIB3_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry", "urllib3")
_redact_filter = _RedactSecrets()
_filter_lock = threading.Lock()


def _install_redaction(secrets: Iterable[str]) -> None:
    _redact_filter.add(secrets)
    with _filter_lock:
        for name in _URLLIB3_LOGGERS:
            logger = logging.getLogger(name)
            if _redact_filter not in logger.filters:
                logger.addFilter(_redact_filter)


class AlertSender:
    """Delivers each incident to the structured log, the webhook and Pub/Sub."""

    def __init__(
        self,
        *,
        webhook_url: str | None,
        alert_format: str,
        topic: str | None = None,
        timeout: float = 5.0,
        backoff_factor: float = 0.5,
    ) -> None:
        if alert_format not in ALERT_FORMATS:
            raise ConfigError(
                f"WATCHDOG_ALERT_FORMAT: {alert_format!r} is not one of "
                f"{', '.join(ALERT_FORMATS)}"
            )
        self._webhook_url = webhook_url
        self._secrets = _secret_forms(webhook_url) if webhook_url else []
        if self._secrets:
            _install_redaction(self._secrets)
        self.alert_format = alert_format
        self.topic = topic
        self.timeout = timeout
        self.backoff_factor = backoff_factor
        self._session: requests.Session | None = None
        self._publisher: PublisherClient | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        webhook = "<set>" if self._webhook_url else None
        return (
            f"AlertSender(webhook={webhook}, alert_format={self.alert_format!r}, "
            f"topic={self.topic!r}, timeout={self.timeout})"
        )

    @property
    def webhook_channel(self) -> str:
        """How the webhook is named in logs and results: its format, never its URL."""
        return f"webhook ({self.alert_format})"

    def send(self, incident: Alert) -> list[DeliveryResult]:
        """Log the alert, then deliver it to every channel, unless it is suppressed."""
        results = [self._log(incident)]
        if isinstance(incident, Incident) and incident.suppressed:
            return results
        if self._webhook_url:
            results.append(self._deliver(self.webhook_channel, self._post, incident))
        if self.topic:
            results.append(
                self._deliver(f"pubsub ({self.topic})", self._publish, incident)
            )
        return results

    def close(self) -> None:
        """Release the HTTP connections and the publisher's channel."""
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None
            if self._publisher is not None:
                self._publisher.stop()
                self._publisher = None

    def _log(self, alert: Alert) -> DeliveryResult:
        if isinstance(alert, Recovery):
            level = logging.INFO
        elif alert.action == Action.FAILED:
            level = logging.ERROR
        elif alert.action in (Action.RESTORED, Action.REPORTED):
            level = logging.WARNING
        else:
            level = logging.INFO
        suppressed = isinstance(alert, Incident) and alert.suppressed
        # `alert` marks what was sent: a log-based alert on it pages once too.
        fields = render_json(alert) | {"alert": not suppressed}
        message = str(fields["summary"])
        if isinstance(alert, Incident) and alert.suppressed:
            # Still at the incident's level: log-based alerting sees every check.
            message = f"{message} [not sent again: {alert.repeat}]"
        log.log(level, "%s", message, extra={"fields": fields})
        return DeliveryResult("log", True, "structured log record written")

    def _deliver(
        self,
        channel: str,
        deliver: Callable[[str, Alert], DeliveryResult],
        incident: Alert,
    ) -> DeliveryResult:
        """Run one channel; whatever it raises becomes a failed result, logged."""
        try:
            result = deliver(channel, incident)
        except (
            requests.RequestException,
            GoogleAPIError,
            GoogleAuthError,
            TimeoutError,
        ) as error:
            result = DeliveryResult(channel, False, self._describe(error))
        except Exception as error:  # noqa: BLE001
            # NB: deliberately broad. One channel must never take the others or
            # the reconcile step down; the incident is already in the log.
            result = DeliveryResult(
                channel, False, f"unexpected {self._describe(error)}"
            )
        if not result.ok:
            log.error(
                "alert delivery through %s failed: %s",
                channel,
                result.detail,
                extra={
                    "fields": {
                        "channel": channel,
                        "service": incident.service.full,
                        "detail": result.detail,
                    }
                },
            )
        return result

    def _describe(self, error: BaseException) -> str:
        """What went wrong, in words, with every form of the webhook URL removed.

        requests puts the URL in its messages, so for its errors only the root
        cause (e.g. "Connection refused") is kept, and redacted all the same.
        """
        if isinstance(error, requests.Timeout):
            text = f"timed out after {self.timeout:g}s (retries included)"
        elif isinstance(error, requests.ConnectionError):
            text = f"could not connect (after retries): {_root_cause(error)}"
        else:
            text = f"{type(error).__name__}: {error}"
        return _redact(_cut(text, 500), self._secrets)

    def _http(self) -> requests.Session:
        with self._lock:
            if self._session is None:
                retry = Retry(
                    total=4,
                    connect=3,
                    # A read timeout may mean the post arrived; one more try risks
                    # a duplicate alert, which beats a lost one.
                    read=1,
                    status=3,
                    other=0,
                    # POST is not idempotent, so urllib3 will not retry it unless
                    # told: a duplicate alert is acceptable, a lost one is not.
                    allowed_methods=frozenset({"POST"}),
                    status_forcelist=(429, 500, 502, 503, 504),
                    backoff_factor=self.backoff_factor,
                    backoff_max=5,
                    respect_retry_after_header=True,
                    # A Slack 429 can ask for a long wait; the function has a
                    # deadline, and the incident is already in the log.
                    retry_after_max=10,
                    raise_on_status=False,
                )
                session = requests.Session()
                adapter = HTTPAdapter(max_retries=retry)
                session.mount("https://", adapter)
                session.mount("http://", adapter)
                self._session = session
            return self._session

    def _post(self, channel: str, incident: Alert) -> DeliveryResult:
        assert self._webhook_url is not None
        payload = _RENDERERS[self.alert_format](incident)
        response = self._http().post(
            self._webhook_url,
            json=payload,
            timeout=self.timeout,
            # A redirect would send the alert somewhere not configured.
            allow_redirects=False,
        )
        with response:
            if 200 <= response.status_code < 300:
                return DeliveryResult(channel, True, f"answered {response.status_code}")
            body = _redact(_cut(response.text.strip(), 200), self._secrets)
            return DeliveryResult(
                channel,
                False,
                f"answered {response.status_code} after retries"
                + (f": {body}" if body else ""),
            )

    def _pubsub(self) -> PublisherClient:
        with self._lock:
            if self._publisher is None:
                # Imported here: the library is heavy and most deployments that
                # publish nothing should not pay for it at cold start.
                from google.cloud import pubsub_v1

                self._publisher = pubsub_v1.PublisherClient()
            return self._publisher

    def _publish(self, channel: str, incident: Alert) -> DeliveryResult:
        assert self.topic is not None
        document = render_json(incident)
        future = self._pubsub().publish(
            self.topic,
            json.dumps(document, ensure_ascii=False).encode("utf-8"),
            timeout=self.timeout,
            service=incident.service.full,
            action=str(document["action"]),
        )
        # NB: on timeout the message may still be sent later; a publisher future
        # cannot be cancelled.
        message_id = future.result(timeout=self.timeout)
        return DeliveryResult(channel, True, f"published message {message_id}")
