"""The benchmarks: each runs the watchdog and its floor, and returns table rows.

Every floor makes the same calls the watchdog makes, through the same gateway
objects (the Watchdog's own `run_api` and `audit_log`), against the same sandbox,
so the channel, connection and server are shared and only the watchdog's own
logic differs. Before each benchmark is timed, its watchdog side is checked to
take the path it is meant to measure (in sync, restored, decoded as an audit
event); a benchmark that would time the wrong thing stops the run instead.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import requests

from bench.measure import Comparison, median_peaks, median_times
from bench.sandbox_process import BenchError, SandboxProcess
from watchdog.model import (
    INVOKER_ROLE,
    Action,
    AuditEvent,
    Binding,
    Policy,
    ProbeResult,
    ServiceName,
)
from watchdog.reconcile import ATTRIBUTION_WINDOW, MAX_PARALLEL_CHECKS, Watchdog
from watchdog.sandbox.audit_trail import push_envelope
from watchdog.sandbox.webhook import WebhookReceiver
from watchdog.triggers import decode

INTERN = "intern@example.com"
HTTP_TIMEOUT = 5.0

# Row names, in the order they are printed; tests look for one line each.
CHECK_IN_SYNC = "check one service, in sync"
RESTORE = "restore one service"
TICK_SEQUENTIAL = "tick vs sequential reads"
TICK_IDEAL = "tick vs ideal parallel reads"
DECODE = "decode a Pub/Sub push"
DECODE_MEMORY = "peak memory: decode a push"
TICK_MEMORY = "peak memory: tick"
BENCHMARKS = (
    CHECK_IN_SYNC,
    RESTORE,
    TICK_SEQUENTIAL,
    TICK_IDEAL,
    DECODE,
    DECODE_MEMORY,
    TICK_MEMORY,
)


@dataclass(frozen=True)
class Plan:
    """How many runs of each benchmark, and the size of the tick."""

    warmup: int
    checks: int
    restores: int
    tick_services: int
    tick_latency: float  # seconds added to each GetService and GetIamPolicy
    ticks: int
    decode_batch: int
    decodes: int
    decode_peaks: int
    tick_peaks: int


DEFAULT_PLAN = Plan(
    warmup=3,
    checks=200,
    restores=30,
    tick_services=40,
    tick_latency=0.020,
    ticks=5,
    decode_batch=200,
    decodes=9,
    decode_peaks=7,
    tick_peaks=3,
)
QUICK_PLAN = Plan(
    warmup=1,
    checks=15,
    restores=3,
    tick_services=16,
    tick_latency=0.010,
    ticks=2,
    decode_batch=20,
    decodes=3,
    decode_peaks=2,
    tick_peaks=1,
)


@dataclass(frozen=True)
class Bench:
    """What every benchmark works with: servers, the wired watchdog, the plan."""

    sandbox: SandboxProcess
    webhook: WebhookReceiver
    watchdog: Watchdog
    plan: Plan

    @property
    def first(self) -> ServiceName:
        return self.watchdog.settings.services[0]


def check_in_sync(bench: Bench) -> list[Comparison]:
    """1. ensure_public on a public service vs its two bare reads."""
    name, run_api = bench.first, bench.watchdog.run_api
    bench.sandbox.reset()
    outcome = bench.watchdog.ensure_public(name, trigger="bench")
    if outcome.action != Action.NONE:
        raise BenchError(f"{name.service} should be in sync, got {outcome.action}")

    def bare() -> None:
        run_api.get_service(name)
        run_api.get_policy(name)

    def watchdog() -> None:
        bench.watchdog.ensure_public(name, trigger="bench")

    plan = bench.plan
    floor, measured = median_times(bare, watchdog, runs=plan.checks, warmup=plan.warmup)
    return [
        Comparison(
            CHECK_IN_SYNC,
            floor,
            measured,
            "time",
            "RunApi.get_service + get_policy, same clients and sandbox",
            plan.checks,
        )
    ]


def with_public_invoker(policy: Policy) -> Policy:
    """The read policy plus an unconditional allUsers invoker: a bare repair."""
    public = Binding(INVOKER_ROLE, ("allUsers",))
    return replace(policy, bindings=(*policy.bindings, public))


def restore(bench: Bench) -> list[Comparison]:
    """2. A full restore vs the same seven calls made bare, in sequence."""
    name, sandbox, webhook = bench.first, bench.sandbox, bench.webhook
    run_api, audit_log = bench.watchdog.run_api, bench.watchdog.audit_log
    settings = bench.watchdog.settings
    health_url = sandbox.uri(name).rstrip("/") + settings.health_path

    def remove_public_access() -> None:
        # A fresh state each time keeps the sandbox's log store (which the
        # attribution query scans) the same size for every run.
        sandbox.reset()
        sandbox.remove_public_access(name, INTERN)
        webhook.clear()

    remove_public_access()
    first = bench.watchdog.ensure_public(name, trigger="bench")
    _require_restored(first.action, first.incident, name)
    (alert,) = webhook.wait_for(1, HTTP_TIMEOUT)
    # The floor posts the very bytes the watchdog posted: same I/O, no rendering.
    payload = alert.body

    http = requests.Session()
    outcomes: list[Action] = []

    def bare() -> None:
        run_api.get_service(name)
        policy = run_api.get_policy(name)
        run_api.set_policy(name, with_public_invoker(policy))
        run_api.get_policy(name)
        with requests.get(health_url, timeout=HTTP_TIMEOUT) as answer:
            answer.raise_for_status()
        audit_log.recent_changes(name, since=datetime.now(UTC) - ATTRIBUTION_WINDOW)
        with http.post(
            webhook.url,
            data=payload,
            headers={"Content-Type": "application/json"},
            timeout=HTTP_TIMEOUT,
        ) as answer:
            answer.raise_for_status()

    def watchdog() -> None:
        outcomes.append(bench.watchdog.ensure_public(name, trigger="bench").action)

    plan = bench.plan
    try:
        floor, measured = median_times(
            bare,
            watchdog,
            runs=plan.restores,
            warmup=plan.warmup,
            setup=remove_public_access,
        )
    finally:
        http.close()
    if set(outcomes) != {Action.RESTORED}:
        raise BenchError(f"every restore should succeed, got {sorted(set(outcomes))}")
    return [
        Comparison(
            RESTORE,
            floor,
            measured,
            "time",
            "get_service, get_policy, set_policy, get_policy, GET /health, "
            "recent_changes, POST webhook",
            plan.restores,
        )
    ]


def _require_restored(action: Action, incident: object, name: ServiceName) -> None:
    if action != Action.RESTORED:
        raise BenchError(f"{name.service} should have been restored, got {action}")
    change = getattr(incident, "change", None)
    probe = getattr(incident, "probe", None)
    if getattr(change, "actor", None) != INTERN:
        raise BenchError(f"the restore of {name.service} did not name {INTERN}")
    if getattr(probe, "result", None) != ProbeResult.OK:
        raise BenchError(f"the probe of {name.service} did not answer OK: {probe}")


def _with_latency(bench: Bench) -> None:
    bench.sandbox.reset()
    for method in ("GetService", "GetIamPolicy"):
        bench.sandbox.add_latency(method, bench.plan.tick_latency)


def _tick_actions(bench: Bench) -> tuple[Callable[[], object], Callable[[], object]]:
    """The bare sequential reads of every service, and a checked check_all."""
    run_api, services = bench.watchdog.run_api, bench.watchdog.settings.services

    def bare() -> list[Policy]:
        policies = []
        for name in services:
            run_api.get_service(name)
            policies.append(run_api.get_policy(name))
        return policies

    def watchdog() -> list[Action]:
        actions = [o.action for o in bench.watchdog.check_all(source="bench")]
        if actions != [Action.NONE] * len(services):
            raise BenchError(f"every service should be in sync, got {set(actions)}")
        return actions

    return bare, watchdog


def tick(bench: Bench) -> list[Comparison]:
    """3. check_all over many slow services vs sequential and ideal parallel reads."""
    plan = bench.plan
    count = len(bench.watchdog.settings.services)
    _with_latency(bench)
    bare, watchdog = _tick_actions(bench)
    try:
        floor, measured = median_times(bare, watchdog, runs=plan.ticks, warmup=1)
    finally:
        bench.sandbox.reset()
    rounds = math.ceil(count / MAX_PARALLEL_CHECKS)
    ideal = plan.tick_latency * 2 * rounds
    latency = f"{plan.tick_latency * 1000:g} ms"
    return [
        Comparison(
            TICK_SEQUENTIAL,
            floor,
            measured,
            "time",
            f"{count} services, {latency} per read: get_service + get_policy of "
            "each, one after another",
            plan.ticks,
        ),
        Comparison(
            TICK_IDEAL,
            ideal,
            measured,
            "time",
            f"computed: {latency} x 2 reads x ceil({count} / "
            f"{MAX_PARALLEL_CHECKS} threads), zero cost per call",
            plan.ticks,
        ),
    ]


def push_body(bench: Bench) -> bytes:
    """A raw Pub/Sub push body carrying the sandbox's entry for an intern's change."""
    bench.sandbox.reset()
    bench.sandbox.remove_public_access(bench.first, INTERN)
    entry = bench.sandbox.entries()[-1]
    bench.sandbox.reset()
    subscription = f"projects/{bench.first.project}/subscriptions/audit-sink"
    envelope = push_envelope(entry, message_id="1", subscription=subscription)
    return json.dumps(envelope).encode()


_PUSH_HEADERS = {
    "Content-Type": "application/json",
    "User-Agent": "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)",
}


def _decode_actions(
    body: bytes,
) -> tuple[Callable[[], object], Callable[[], object]]:
    now = datetime.now(UTC)

    def bare() -> object:
        document = json.loads(body)
        return json.loads(base64.b64decode(document["message"]["data"]))

    def watchdog() -> object:
        return decode(_PUSH_HEADERS, body, now=now)

    trigger = watchdog()
    if not isinstance(trigger, AuditEvent) or trigger.change.actor != INTERN:
        raise BenchError(
            f"the push body should decode to the intern's change: {trigger}"
        )
    return bare, watchdog


def decoding(bench: Bench) -> list[Comparison]:
    """4. triggers.decode of a push body vs json.loads + b64decode + json.loads."""
    plan = bench.plan
    body = push_body(bench)
    bare, watchdog = _decode_actions(body)
    floor, measured = median_times(
        bare, watchdog, runs=plan.decodes, warmup=1, batch=plan.decode_batch
    )
    return [
        Comparison(
            DECODE,
            floor,
            measured,
            "time",
            f"json.loads body, b64decode, json.loads entry ({len(body)} bytes; "
            f"{plan.decode_batch} calls per run)",
            plan.decodes,
        )
    ]


def memory(bench: Bench) -> list[Comparison]:
    """5. tracemalloc peaks of one decode and of one tick, against their floors."""
    plan = bench.plan
    body = push_body(bench)
    decode_floor, decode_peak = median_peaks(
        *_decode_actions(body), runs=plan.decode_peaks
    )
    count = len(bench.watchdog.settings.services)
    _with_latency(bench)
    try:
        tick_floor, tick_peak = median_peaks(
            *_tick_actions(bench), runs=plan.tick_peaks
        )
    finally:
        bench.sandbox.reset()
    return [
        Comparison(
            DECODE_MEMORY,
            decode_floor,
            decode_peak,
            "memory",
            "json.loads body, b64decode, json.loads entry (Python heap only)",
            plan.decode_peaks,
        ),
        Comparison(
            TICK_MEMORY,
            tick_floor,
            tick_peak,
            "memory",
            f"sequential bare reads of {count} services (Python heap only; "
            "gRPC's C core and thread stacks not seen)",
            plan.tick_peaks,
        ),
    ]


SUITE: tuple[Callable[[Bench], list[Comparison]], ...] = (
    check_in_sync,
    restore,
    tick,
    decoding,
    memory,
)
