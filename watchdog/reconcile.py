"""Check, restore, verify, attribute, alert: one reconcile step per service.

Ticks (level-triggered) and audit events (edge-triggered) both end here, and both
act only on the policy read *now*. An event chooses which watched service to look
at, never what to write, so a duplicate, late, forged or out-of-order event is at
worst one extra read.

What an outcome means beyond this invocation (a repeat of a problem already
alerted, a recovery, the third restore of the same actor's change) is decided by
watchdog.incidents against a per-service record kept in a state store; the
store's failure never stops a restore, it only costs the memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from watchdog.config import Settings
from watchdog.errors import (
    EtagConflict,
    PermanentError,
    RetryableError,
    WatchdogError,
)
from watchdog.incidents import (
    InSync,
    Observation,
    Rules,
    ServiceRecord,
    Verdict,
    decide,
    fingerprint_drift,
    fingerprint_failure,
)
from watchdog.model import (
    Action,
    AuditEvent,
    Change,
    Drift,
    Ignored,
    Incident,
    Policy,
    Probe,
    Recovery,
    ServiceInfo,
    ServiceName,
    Tick,
    Trigger,
)
from watchdog.policy import find_drift, repair_policy
from watchdog.state_store import MemoryStateStore, StateStore

log = logging.getLogger(__name__)

# An etag conflict means someone wrote between our read and our write. Reading
# again and deciding again is right; a handful of rounds covers any human race,
# and a writer that beats us every time is a fight to report, not to win.
MAX_WRITE_ATTEMPTS = 4
CONFLICT_BACKOFF = 0.2  # seconds, doubled per attempt

# How far back a tick looks in Cloud Logging for who changed a policy.
ATTRIBUTION_WINDOW = timedelta(hours=6)

# A tick that finds drift whose audit entry has been in Cloud Logging this long
# means the event path failed: the sink should have delivered the entry and the
# event should have fixed the drift in seconds. Sinks without publish rights
# drop entries with no error anywhere the function can see (PITFALLS 11).
AUDIT_FEED_GRACE = timedelta(minutes=3)

# Parallel reads keep a tick over many services well inside its one-minute slot.
MAX_PARALLEL_CHECKS = 8


class RunApiLike(Protocol):
    def get_service(self, name: ServiceName) -> ServiceInfo: ...
    def get_policy(self, name: ServiceName) -> Policy: ...
    def set_policy(self, name: ServiceName, policy: Policy) -> Policy: ...


class AuditLogLike(Protocol):
    def recent_changes(
        self,
        name: ServiceName,
        *,
        since: datetime,
        until: datetime | None = None,
        limit: int = 10,
    ) -> list[Change]: ...


class SenderLike(Protocol):
    def send(self, alert: Incident | Recovery) -> object: ...


Prober = Callable[[str, str], Probe]


@dataclass(frozen=True)
class Outcome:
    """What one reconcile step found and did; `retryable` asks for redelivery."""

    service: ServiceName
    action: Action
    drift: Drift = field(default_factory=Drift)
    incident: Incident | None = None
    detail: str = ""
    retryable: bool = False
    recovery: Recovery | None = None  # announced with this outcome


@dataclass
class _Stopwatch:
    timings: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.timings[name] = round(
                self.timings.get(name, 0.0) + time.monotonic() - start, 4
            )


def _now() -> datetime:
    return datetime.now(UTC)


class Watchdog:
    """Keeps the watched services public; one instance per function instance."""

    def __init__(
        self,
        settings: Settings,
        *,
        run_api: RunApiLike,
        audit_log: AuditLogLike,
        sender: SenderLike,
        prober: Prober,
        clock: Callable[[], datetime] = _now,
        sleep: Callable[[float], None] = time.sleep,
        state: StateStore | None = None,
    ) -> None:
        self.settings = settings
        # NB: the default memory lives in this instance only (see state_store).
        self.state: StateStore = state if state is not None else MemoryStateStore()
        reminder = settings.reminder_interval
        self.rules = Rules(
            escalate_after=settings.escalate_after,
            escalation_window=timedelta(seconds=settings.escalation_window),
            reminder_interval=timedelta(seconds=reminder) if reminder else None,
        )
        self.run_api = run_api
        self.audit_log = audit_log
        self.sender = sender
        self.prober = prober
        self.clock = clock
        self.sleep = sleep

    def handle(self, trigger: Trigger) -> list[Outcome]:
        """Act on one decoded delivery."""
        if isinstance(trigger, Ignored):
            log.info(
                "ignored a delivery: %s",
                trigger.reason,
                extra={"fields": {"delivery": trigger.delivery}},
            )
            return []
        if isinstance(trigger, Tick):
            return self.check_all(source=trigger.source)
        return self.handle_change(trigger)

    def check_all(self, *, source: str = "tick") -> list[Outcome]:
        """Check every watched service, in parallel."""
        services = self.settings.services
        workers = min(MAX_PARALLEL_CHECKS, len(services))
        with ThreadPoolExecutor(workers, thread_name_prefix="check") as pool:
            outcomes = list(
                pool.map(
                    lambda name: self.ensure_public(name, trigger=source), services
                )
            )
        drifted = [o for o in outcomes if o.action != Action.NONE]
        # The heartbeat record feeds the "watchdog went quiet" alert in Terraform.
        log.info(
            "tick checked %d services, %d drifted",
            len(outcomes),
            len(drifted),
            extra={
                "fields": {
                    "heartbeat": True,
                    "source": source,
                    "services": len(outcomes),
                    "drifted": len(drifted),
                    "failed": sum(o.action == Action.FAILED for o in outcomes),
                }
            },
        )
        return outcomes

    def handle_change(self, event: AuditEvent) -> list[Outcome]:
        """Check the one service an audit entry names, if it is watched."""
        change = event.change
        fields = _change_fields(change) | {"delivery": event.delivery}
        watched = self.settings.watched(change.service) if change.service else None
        if watched is None:
            log.info(
                "audit entry about an unwatched service, nothing to do: %s",
                change.resource_name,
                extra={"fields": fields},
            )
            return []
        if self._is_own(change):
            log.info(
                "audit entry is the watchdog's own write on %s, nothing to do",
                watched.service,
                extra={"fields": fields},
            )
            return []
        if change.failed:
            # A denied or failed call changed nothing (it is no "removed by X"),
            # but the service is checked all the same: it costs one read.
            log.info(
                "audit entry on %s is a failed %s by %s: %s",
                watched.service,
                change.method.rsplit(".", 1)[-1],
                change.actor or "an unknown caller",
                change.status_message or "no status message",
                extra={"fields": fields},
            )
            return [self.ensure_public(watched, trigger="audit event")]
        outcome = self.ensure_public(watched, trigger="audit event", change=change)
        if outcome.action == Action.NONE:
            # Often a tick restored the service before this entry was delivered
            # and alerted with the actor "not yet known"; this record names them.
            log.info(
                "%s by %s on %s at %s; the service is public now",
                change.method.rsplit(".", 1)[-1],
                change.actor or "an unknown caller",
                watched.service,
                f"{change.time:%H:%M:%S} UTC" if change.time else "an unknown time",
                extra={"fields": fields | {"attribution": True}},
            )
        return [outcome]

    def ensure_public(
        self, name: ServiceName, *, trigger: str, change: Change | None = None
    ) -> Outcome:
        """Bring one service back to its desired state, and say what happened."""
        clock = _Stopwatch()
        detected_at = self.clock()
        try:
            with clock.step("read"):
                info = self.run_api.get_service(name)
            if info.invoker_iam_disabled:
                log.info(
                    "%s is public: its invoker IAM check is disabled",
                    name.service,
                    extra={"fields": {"service": name.full, "in_sync": True}},
                )
                recovery = self._note_in_sync(
                    name, trigger, "found public: its invoker IAM check is disabled"
                )
                return Outcome(
                    name,
                    Action.NONE,
                    detail="invoker check disabled",
                    recovery=recovery,
                )
            return self._restore(name, info, trigger, change, clock, detected_at)
        except (RetryableError, PermanentError) as error:
            return self._cannot_check(name, trigger, clock, detected_at, error)

    def _cannot_check(
        self,
        name: ServiceName,
        trigger: str,
        clock: _Stopwatch,
        detected_at: datetime,
        error: WatchdogError,
    ) -> Outcome:
        """The watchdog is blind to a service: that is an incident too.

        Permission denied, a deleted service or an API that stays down leave a
        service unguarded; saying so once (the memory keeps repeats quiet)
        beats a log line nobody reads while the service may be broken.
        """
        retryable = isinstance(error, RetryableError)
        log.error(
            "could not check %s%s: %s",
            name.service,
            ", will retry" if retryable else "",
            error,
            extra={"fields": {"service": name.full, "error": str(error)}},
        )
        incident = Incident(
            service=name,
            drift=Drift(),
            action=Action.FAILED,
            detected_at=detected_at,
            trigger=trigger,
            error=str(error),
            timings=dict(clock.timings),
            mode=self.settings.mode,
            fingerprint=fingerprint_failure(error, str(error)),
        )
        incident, recovery = self._announce(incident)
        return Outcome(
            name,
            Action.FAILED,
            incident=incident,
            detail=str(error),
            retryable=retryable,
            recovery=recovery,
        )

    def _restore(
        self,
        name: ServiceName,
        info: ServiceInfo,
        trigger: str,
        change: Change | None,
        clock: _Stopwatch,
        detected_at: datetime,
    ) -> Outcome:
        first_drift: Drift | None = None
        action = Action.FAILED
        error = ""
        failure: WatchdogError | None = None
        retryable = False
        try:
            for attempt in range(MAX_WRITE_ATTEMPTS):
                with clock.step("read"):
                    policy = self.run_api.get_policy(name)
                drift = find_drift(policy, self.settings.desired)
                if not drift and first_drift is None:
                    log.info(
                        "%s is in sync",
                        name.service,
                        extra={"fields": {"service": name.full, "in_sync": True}},
                    )
                    recovery = self._note_in_sync(
                        name,
                        trigger,
                        "found in sync: fixed since the last check (by someone "
                        "else, or by an earlier restore that was not confirmed)",
                    )
                    return Outcome(name, Action.NONE, recovery=recovery)
                if not drift:
                    # Restored between our read and our write. By another
                    # instance handling the same drift, by a person, or by this
                    # very write whose answer was lost and whose retry was then
                    # refused on the etag. The drift was real either way: alert
                    # (at worst twice in a race) rather than risk alerting never.
                    log.info(
                        "%s was already restored when read again after a conflict",
                        name.service,
                        extra={"fields": {"service": name.full, "in_sync": True}},
                    )
                    action, error, failure = Action.RESTORED, "", None
                    break
                first_drift = first_drift or drift
                if not self.settings.enforce:
                    action = Action.REPORTED
                    break
                try:
                    with clock.step("write"):
                        self.run_api.set_policy(name, repair_policy(policy, drift))
                except EtagConflict as conflict:
                    failure = conflict
                    error = (
                        f"the policy kept changing under the watchdog: {conflict} "
                        f"({attempt + 1} of {MAX_WRITE_ATTEMPTS} attempts)"
                    )
                    log.warning(
                        "policy of %s changed while restoring it; reading it again",
                        name.service,
                        extra={
                            "fields": {"service": name.full, "attempt": attempt + 1}
                        },
                    )
                    self.sleep(CONFLICT_BACKOFF * 2**attempt)
                    continue
                except PermanentError as refused:
                    failure = refused
                    error = str(refused)
                    break
                with clock.step("verify"):
                    after = find_drift(
                        self.run_api.get_policy(name), self.settings.desired
                    )
                if after:
                    failure = None
                    error = f"the policy read back after the write still lacks {after}"
                else:
                    action, error, failure = Action.RESTORED, "", None
                break
        except RetryableError as unavailable:
            if first_drift is None:
                raise  # nothing is known yet; ensure_public reports it
            # The write may or may not have landed: say so, alert, and ask for
            # redelivery. The next check finds it in sync (and the memory
            # announces the recovery) or tries again.
            action, failure, retryable = Action.FAILED, unavailable, True
            error = (
                "the Cloud Run Admin API stopped answering during the restore, "
                f"so it is not confirmed: {unavailable}"
            )

        assert first_drift is not None  # the loop returns early when in sync
        if action == Action.REPORTED:
            fingerprint = fingerprint_drift(first_drift.missing, first_drift.forbidden)
        elif action == Action.FAILED:
            fingerprint = fingerprint_failure(failure, error)
        else:
            fingerprint = ""
        probe = None
        if action == Action.RESTORED:
            with clock.step("probe"):
                probe = self.prober(info.uri, self.settings.health_path)
        with clock.step("attribute"):
            found, attribution = self._attribute(name, change, first_drift, detected_at)
        incident = Incident(
            service=name,
            drift=first_drift,
            action=action,
            detected_at=detected_at,
            trigger=trigger,
            change=found,
            attribution=attribution,
            probe=probe,
            error=error,
            timings=dict(clock.timings),
            mode=self.settings.mode,
            fingerprint=fingerprint,
        )
        incident, recovery = self._announce(incident)
        return Outcome(
            name,
            action,
            first_drift,
            incident,
            detail=error,
            retryable=retryable,
            recovery=recovery,
        )

    def _announce(self, incident: Incident) -> tuple[Incident, Recovery | None]:
        """Send what the memory says to send: the incident, a recovery, or a log."""
        verdict = self._remember(incident.service, incident)
        if verdict is None:
            # No memory: alert as if this were the first time.
            self.sender.send(incident)
            return incident, None
        if verdict.recovery is not None:
            self.sender.send(verdict.recovery)
        announced = verdict.incident or incident
        # A suppressed incident is still written to the structured log.
        self.sender.send(announced)
        return announced, verdict.recovery

    def _note_in_sync(
        self, name: ServiceName, trigger: str, fixed_by: str
    ) -> Recovery | None:
        """Announce the recovery of an alerted problem, if one was open."""
        seen = InSync(name, fixed_by, trigger, self.settings.mode)
        verdict = self._remember(name, seen)
        if verdict is None or verdict.recovery is None:
            return None
        self.sender.send(verdict.recovery)
        return verdict.recovery

    def _remember(self, name: ServiceName, seen: Observation) -> Verdict | None:
        """The verdict on `seen`, stored; None when the state store failed."""
        now = self.clock()
        rules = self.rules

        def judge(record: ServiceRecord) -> tuple[ServiceRecord, Verdict]:
            verdict = decide(record, seen, now, rules)
            return verdict.record, verdict

        try:
            return self.state.transact(name, judge)
        except (RetryableError, PermanentError) as error:
            log.error(
                "state store failed for %s; alerting as if there were no memory: %s",
                name.service,
                error,
                extra={"fields": {"service": name.full, "state_error": str(error)}},
            )
            return None

    def _attribute(
        self,
        name: ServiceName,
        change: Change | None,
        drift: Drift,
        detected_at: datetime,
    ) -> tuple[Change | None, str]:
        """Who made the change, from Cloud Logging and the triggering event.

        The event's entry is one candidate among the newest entries in Cloud
        Logging (it may not be queryable yet); a late, duplicate or unrelated
        event gets no say beyond that. An entry is named when the policy it
        shows explains the drift and the entry before it does not (else the
        drift was older). An entry that shows no policy (a service update) is
        named, with that caveat, only when no entry explains the drift. The
        search stops at the watchdog's own last write: anything older happened
        before the last restore. With nothing left, the actor is "not yet
        known" rather than a guess (PITFALLS 10).
        """
        # A project-number name matched a watched service by location and
        # name only; such an event may be another project's and names no one.
        event = change if change is not None and change.service == name else None
        since = detected_at - ATTRIBUTION_WINDOW
        try:
            # NB: entries up to the moment the drift was found, so this
            # check's own restore is not among them and every watchdog entry
            # that is marks an earlier restore.
            candidates = self.audit_log.recent_changes(
                name, since=since, until=detected_at
            )
        except (RetryableError, PermanentError) as error:
            if event is not None and self._explains(event, drift) is not False:
                return event, (
                    "from the audit event that triggered this check (Cloud "
                    f"Logging could not be read to confirm it: {error})"
                )
            return None, f"not yet known: the audit log could not be read ({error})"
        if event is not None and all(
            c.insert_id != event.insert_id for c in candidates
        ):
            candidates = sorted(
                [*candidates, event], key=lambda c: c.time or since, reverse=True
            )
        readable = [c for c in candidates if not c.failed]  # newest first
        unshown: Change | None = None
        for index, candidate in enumerate(readable):
            if self._is_own(candidate):
                break  # older entries predate the watchdog's last restore
            explains = self._explains(candidate, drift)
            if explains is None:
                unshown = unshown or candidate
                continue
            if not explains:
                continue  # a change that left the invoker role as desired
            before = next(
                (o for o in readable[index + 1 :] if o.invoker_after is not None),
                None,
            )
            if before is not None and self._explains(before, drift):
                continue  # the policy was already so before this change
            return candidate, self._found(name, candidate, event, detected_at)
        if unshown is not None:
            how = self._found(name, unshown, event, detected_at)
            return unshown, how + (
                " (its entry shows no policy, so it may not be the cause)"
            )
        return None, (
            "not yet known: no audit entry since the watchdog's last write, or "
            f"since {since:%Y-%m-%d %H:%M} UTC, explains it (entries can take "
            "minutes to arrive; the audit event, when it comes, is logged with "
            "the actor)"
        )

    def _found(
        self,
        name: ServiceName,
        found: Change,
        event: Change | None,
        detected_at: datetime,
    ) -> str:
        """How an actor was found, and whether the audit feed looks dead."""
        if event is not None and found.insert_id == event.insert_id:
            return "from the audit event that triggered this check"
        how = "from Cloud Logging: the change that left the policy so"
        if found.time and detected_at - found.time > AUDIT_FEED_GRACE:
            late = (detected_at - found.time).total_seconds() / 60
            how += (
                f". Its audit event never brought the watchdog, though the "
                f"entry is {late:.0f} min old: the log sink may be unable to "
                "publish (run python -m watchdog doctor)"
            )
            log.error(
                "audit feed looks dead: %s changed %s %.0f min ago and no "
                "audit event arrived",
                found.actor or "someone",
                name.service,
                late,
                extra={"fields": _change_fields(found) | {"feed_dead": True}},
            )
        return how

    def _explains(self, change: Change, drift: Drift) -> bool | None:
        """Does the policy an entry shows account for the drift? None: not shown."""
        after = change.invoker_after
        if after is None:
            return None
        return any(m not in after for m in drift.missing) or any(
            m in after for m in drift.forbidden
        )

    def _is_own(self, change: Change) -> bool:
        """A write the watchdog made itself: its account, impersonated by no one.

        Someone impersonating the watchdog's account shows up with a delegation
        chain, and is treated (and named) as who they are.
        """
        own = self.settings.self_principal
        return own is not None and change.actor == own and not change.delegation


def _change_fields(change: Change) -> dict[str, object]:
    return {
        "service": change.service.full if change.service else change.resource_name,
        "method": change.method,
        "actor": change.actor,
        "origin": change.origin,
        "delegation": list(change.delegation),
        "caller_ip": change.caller_ip,
        "insert_id": change.insert_id,
        "failed": change.failed,
    }
