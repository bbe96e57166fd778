"""Memory across invocations: which alerts to send, which to log only.

Every invocation of the function decides on its own what it saw; this module
decides what that means given what earlier invocations saw, so that

* a problem that persists (an org policy that keeps refusing `allUsers`, a
  permission the watchdog lacks) pages once, and again only when its
  fingerprint changes or a reminder is due (PITFALLS 5);
* a service whose alerted problem is gone gets one "recovered" alert;
* an identity that keeps undoing the restore (authoritative Terraform,
  PITFALLS 8) is escalated once, and its later restores are logged only until
  it has been quiet for a whole window.

`decide` is a pure function of the stored record of one service, what this
invocation observed and the time. The state store runs it inside a transaction
(and may run it more than once when instances race), so it must not do I/O.
The record is kept small and bounded so that it fits one document.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from watchdog.errors import (
    EtagConflict,
    MalformedInput,
    PermissionDenied,
    PolicyRejected,
    ServiceNotFound,
    WatchdogError,
)
from watchdog.model import Action, Escalation, Incident, Recovery, ServiceName

# The most restores one record remembers; a fight needs only the last few.
MAX_REMEMBERED_RESTORES = 20

_CONSTRAINT = re.compile(r"constraints/[\w.]+")


@dataclass(frozen=True)
class Rules:
    """Thresholds of the decisions; the defaults are the settings' defaults."""

    escalate_after: int = 3  # restores by one actor key within the window
    escalation_window: timedelta = timedelta(hours=24)
    reminder_interval: timedelta | None = timedelta(hours=24)  # None: never


@dataclass(frozen=True)
class Problem:
    """The alerted, still unresolved problem of a service."""

    fingerprint: str
    summary: str
    since: datetime  # first found (the service has not been right since)
    last_seen: datetime
    checks: int  # checks that found it
    alerted_at: datetime  # the last alert sent about it (first, change, reminder)


@dataclass(frozen=True)
class RestoreRecord:
    """One restore of a change made by a known identity."""

    at: datetime
    actor: str  # actor key: delegation origin, else the actor
    tool: str = ""  # e.g. "Terraform"; "" when the user agent names none


@dataclass(frozen=True)
class ServiceRecord:
    """Everything remembered about one service; one document in the store."""

    problem: Problem | None = None
    restores: tuple[RestoreRecord, ...] = ()
    escalated: Mapping[str, datetime] = field(default_factory=dict)  # key -> when


@dataclass(frozen=True)
class InSync:
    """A check found the service as desired (or someone else fixed it meanwhile)."""

    service: ServiceName
    fixed_by: str  # what made it right, should a problem be open
    trigger: str
    mode: str = "enforce"


Observation = Incident | InSync


@dataclass(frozen=True)
class Verdict:
    """What to do with one observation, and the record to store."""

    record: ServiceRecord
    incident: Incident | None = None  # annotated; send unless `suppressed`
    recovery: Recovery | None = None  # send first, when set


# --- fingerprints -------------------------------------------------------------


def fingerprint_failure(error: WatchdogError | None, message: str) -> str:
    """The kind of a failed restore: error class plus the detail that names it.

    Equal fingerprints are one problem. An org-policy refusal is named by its
    constraint, so a different constraint (someone changed the org policy) is a
    new problem and alerts again.
    """
    if isinstance(error, PolicyRejected):
        constraint = _CONSTRAINT.search(message)
        return "policy rejected" + (f": {constraint.group(0)}" if constraint else "")
    if isinstance(error, PermissionDenied):
        return "permission denied"
    if isinstance(error, ServiceNotFound):
        return "service not found"
    if isinstance(error, EtagConflict):
        return "policy kept changing"
    if error is None:
        return "write did not take"
    return type(error).__name__


def fingerprint_drift(missing: tuple[str, ...], forbidden: tuple[str, ...]) -> str:
    """The kind of a drift left in place (report mode): which members are wrong."""
    parts = []
    if missing:
        parts.append("missing " + ",".join(sorted(missing)))
    if forbidden:
        parts.append("forbidden " + ",".join(sorted(forbidden)))
    return "drift: " + "; ".join(parts)


def tool_name(user_agent: str | None) -> str:
    """The tool family in a user agent, e.g. "Terraform"; "" when none is named."""
    if not user_agent:
        return ""
    lowered = user_agent.lower()
    for marker, name in (
        ("terraform/", "Terraform"),
        ("pulumi", "Pulumi"),
        ("command/gcloud.", "gcloud"),
        ("google-cloud-sdk", "gcloud"),
        ("gcloud/", "gcloud"),
        ("config-connector", "Config Connector"),
        ("cnrm", "Config Connector"),
        ("mozilla/", "a web browser"),
    ):
        if marker in lowered:
            return name
    first = user_agent.split()[0].split("/")[0].rstrip(",")
    return first[:60]


def actor_key(incident: Incident) -> str | None:
    """Who is behind a restored change: the delegation origin, else the actor."""
    change = incident.change
    if change is None or change.failed:
        return None
    return change.origin or change.actor or None


# --- words --------------------------------------------------------------------


def describe_span(span: timedelta) -> str:
    """A duration for a person: "45 s", "37 min", "1 h 40 min", "3 days 2 h".

    Two units from an hour up: "2 h" for 100 minutes would hide 20 of them.
    Rounded down, so 59.9 s is never shown as a minute that has not passed.
    """
    seconds = int(max(span.total_seconds(), 0.0))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    days, hours = divmod(hours, 24)
    text = f"{days} day" + ("" if days == 1 else "s")
    return text + (f" {hours} h" if hours else "")


def _checks(count: int) -> str:
    return f"{count} check" + ("" if count == 1 else "s")


def _verb(incident: Incident) -> str:
    if incident.action == Action.REPORTED:
        return "drifted (report mode)"
    return "failing"


# --- the decision -------------------------------------------------------------


def decide(
    record: ServiceRecord, seen: Observation, now: datetime, rules: Rules
) -> Verdict:
    """What this observation means given the service's record; pure."""
    record = _forget_old(record, now, rules)
    if isinstance(seen, InSync):
        return _in_sync(record, seen, now)
    if seen.action == Action.RESTORED:
        return _restored(record, seen, now, rules)
    if seen.action in (Action.FAILED, Action.REPORTED):
        return _unresolved(record, seen, now, rules)
    return Verdict(record, seen)


def _forget_old(record: ServiceRecord, now: datetime, rules: Rules) -> ServiceRecord:
    """Drop restores outside the window, and escalations whose actor went quiet."""
    start = now - rules.escalation_window
    restores = tuple(r for r in record.restores if r.at > start)
    restores = restores[-MAX_REMEMBERED_RESTORES:]
    active = {r.actor for r in restores}
    escalated = {k: at for k, at in record.escalated.items() if k in active}
    if restores == record.restores and escalated == dict(record.escalated):
        return record
    return replace(record, restores=restores, escalated=escalated)


def _recovery(
    problem: Problem, seen: Observation, now: datetime, fixed_by: str
) -> Recovery:
    return Recovery(
        service=seen.service,
        problem=problem.summary,
        broken_since=problem.since,
        recovered_at=now,
        checks=problem.checks,
        fixed_by=fixed_by,
        trigger=seen.trigger,
        fingerprint=problem.fingerprint,
        mode=seen.mode,
    )


def _in_sync(record: ServiceRecord, seen: InSync, now: datetime) -> Verdict:
    if record.problem is None:
        return Verdict(record)
    recovery = _recovery(record.problem, seen, now, seen.fixed_by)
    return Verdict(replace(record, problem=None), recovery=recovery)


def _unresolved(
    record: ServiceRecord, incident: Incident, now: datetime, rules: Rules
) -> Verdict:
    fingerprint = incident.fingerprint or incident.error or str(incident.action)
    summary = incident.error or fingerprint
    problem = record.problem
    if problem is None:
        opened = Problem(fingerprint, summary, now, now, 1, now)
        return Verdict(replace(record, problem=opened), incident)
    checks = problem.checks + 1
    lasted = describe_span(now - problem.since)
    if problem.fingerprint != fingerprint:
        changed = Problem(fingerprint, summary, problem.since, now, checks, now)
        note = (
            f"the problem changed (was: {problem.fingerprint}); not right for "
            f"{lasted}, {_checks(checks)}"
        )
        return Verdict(replace(record, problem=changed), replace(incident, repeat=note))
    due = rules.reminder_interval
    if due is not None and now - problem.alerted_at >= due:
        reminded = replace(problem, last_seen=now, checks=checks, alerted_at=now)
        note = f"reminder: still {_verb(incident)} for {lasted}, {_checks(checks)}"
        return Verdict(
            replace(record, problem=reminded), replace(incident, repeat=note)
        )
    seen_again = replace(problem, last_seen=now, checks=checks)
    note = f"{_verb(incident)} for {lasted}, {_checks(checks)}"
    return Verdict(
        replace(record, problem=seen_again),
        replace(incident, suppressed=True, repeat=note),
    )


def _restored(
    record: ServiceRecord, incident: Incident, now: datetime, rules: Rules
) -> Verdict:
    recovery = None
    if record.problem is not None:
        recovery = _recovery(
            record.problem, incident, now, "the watchdog restored it: " + _fix(incident)
        )
        record = replace(record, problem=None)
    key = actor_key(incident)
    if key is None:
        # Nobody to hold responsible (yet): no fight can be counted.
        return Verdict(record, incident, recovery)
    tool = tool_name(incident.change.user_agent if incident.change else None)
    restores = (*record.restores, RestoreRecord(now, key, tool))
    restores = restores[-MAX_REMEMBERED_RESTORES:]
    record = replace(record, restores=restores)
    mine = [r for r in restores if r.actor == key]
    if key in record.escalated:
        note = (
            f"restore {len(mine)} of a change by the same identity within "
            f"{describe_span(rules.escalation_window)}; escalated at "
            f"{record.escalated[key]:%Y-%m-%d %H:%M} UTC, so logged only"
        )
        quiet = replace(incident, suppressed=True, repeat=note)
        return Verdict(record, quiet, recovery)
    if len(mine) >= rules.escalate_after:
        tools = tuple(dict.fromkeys(r.tool for r in mine if r.tool))
        escalation = Escalation(
            key, len(mine), mine[0].at, tools, quiet_for=rules.escalation_window
        )
        record = replace(record, escalated={**record.escalated, key: now})
        return Verdict(record, replace(incident, escalation=escalation), recovery)
    return Verdict(record, incident, recovery)


def _fix(incident: Incident) -> str:
    if incident.drift.missing:
        what = f"added {', '.join(incident.drift.missing)} back"
    else:
        what = f"removed {', '.join(incident.drift.forbidden)}"
    return f"{what} on {incident.trigger}"


# --- the stored form ----------------------------------------------------------


def _iso(moment: datetime) -> str:
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return moment.astimezone(UTC).isoformat()


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value))


def to_document(record: ServiceRecord) -> dict[str, Any]:
    """The record as plain JSON-like values (ISO times), for the store."""
    problem = record.problem
    return {
        "problem": None
        if problem is None
        else {
            "fingerprint": problem.fingerprint,
            "summary": problem.summary[:2000],
            "since": _iso(problem.since),
            "last_seen": _iso(problem.last_seen),
            "checks": problem.checks,
            "alerted_at": _iso(problem.alerted_at),
        },
        "restores": [
            {"at": _iso(r.at), "actor": r.actor, "tool": r.tool}
            for r in record.restores
        ],
        # A list, not a map: actor keys hold "/" and ":" (principal:// URIs).
        "escalated": [
            {"actor": key, "at": _iso(at)} for key, at in record.escalated.items()
        ],
    }


def from_document(document: Mapping[str, Any] | None) -> ServiceRecord:
    """The record stored as `to_document` wrote it; an empty record for None.

    Raises MalformedInput for a document this version cannot read (written by
    another version, or by hand), so the caller can start afresh.
    """
    try:
        return _read_document(document)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise MalformedInput(
            f"stored record is unreadable ({type(error).__name__}: {error})"
        ) from error


def _read_document(document: Mapping[str, Any] | None) -> ServiceRecord:
    if not document:
        return ServiceRecord()
    raw = document.get("problem")
    problem = None
    if raw:
        problem = Problem(
            fingerprint=str(raw["fingerprint"]),
            summary=str(raw["summary"]),
            since=_time(raw["since"]),
            last_seen=_time(raw["last_seen"]),
            checks=int(raw["checks"]),
            alerted_at=_time(raw["alerted_at"]),
        )
    restores = tuple(
        RestoreRecord(_time(r["at"]), str(r["actor"]), str(r.get("tool", "")))
        for r in document.get("restores") or ()
    )
    escalated = {
        str(item["actor"]): _time(item["at"])
        for item in document.get("escalated") or ()
    }
    return ServiceRecord(problem, restores, escalated)
