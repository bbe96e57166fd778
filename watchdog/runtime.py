"""Wiring for the function: settings and clients built once per instance.

`main.py` stays thin: it hands each request here and returns what it gets. This
module maps outcomes to delivery semantics: 2xx acknowledges (done, or can never
succeed), 5xx asks Pub/Sub or Eventarc to deliver again (a retry can help).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime

from watchdog.alert_delivery import AlertSender
from watchdog.audit_log import AuditLogReader
from watchdog.config import Settings, load_settings
from watchdog.errors import ConfigError
from watchdog.health import probe
from watchdog.logs import configure_logging
from watchdog.reconcile import Outcome, Watchdog
from watchdog.run_api import RunApi
from watchdog.state_store import FirestoreStateStore, MemoryStateStore, StateStore
from watchdog.triggers import decode

log = logging.getLogger(__name__)

Response = tuple[str, int, dict[str, str]]


def build_state_store(settings: Settings) -> StateStore:
    """The memory shared by invocations: Firestore, or this instance's own.

    The Firestore database is in the project of the (first) watched service:
    one deployment watches one project. FIRESTORE_EMULATOR_HOST, when set,
    sends the client library to the emulator.
    """
    if settings.state == "firestore":
        return FirestoreStateStore(
            project=settings.services[0].project,
            database=settings.firestore_database,
            collection=settings.state_collection,
        )
    # NB: per instance only; see watchdog.state_store.
    return MemoryStateStore()


def build_watchdog(settings: Settings) -> Watchdog:
    """A Watchdog talking to Google's APIs, or to the endpoints in the settings."""

    return Watchdog(
        settings,
        run_api=RunApi(settings.run_endpoint),
        audit_log=AuditLogReader(settings.logging_endpoint),
        sender=AlertSender(
            webhook_url=settings.alert_webhook_url,
            alert_format=settings.alert_format,
            topic=settings.alert_topic,
        ),
        prober=lambda uri, path: probe(uri, path, timeout=settings.health_timeout),
        state=build_state_store(settings),
    )


@functools.cache
def current_watchdog() -> Watchdog:
    """The instance's Watchdog, built on first use (clients connect lazily)."""
    configure_logging()
    return build_watchdog(load_settings(os.environ))


def _respond(outcomes: list[Outcome], note: str = "") -> Response:
    retry = any(o.retryable for o in outcomes)
    body = {
        "outcomes": [
            {"service": o.service.full, "action": str(o.action), "detail": o.detail}
            for o in outcomes
        ],
        "retry": retry,
    }
    if note:
        body["note"] = note
    return json.dumps(body), 500 if retry else 200, {"Content-Type": "application/json"}


def _misconfigured(error: ConfigError) -> Response:
    # Answer 5xx: nothing was checked, and deliveries kept for redelivery are
    # handled once the settings are fixed and the function is redeployed.
    configure_logging()
    log.critical("watchdog is misconfigured: %s", error)
    return json.dumps({"error": str(error)}), 500, {"Content-Type": "application/json"}


def handle_event(headers: Mapping[str, str], body: bytes) -> Response:
    """Any event delivery: audit entries, Pub/Sub and scheduler ticks."""
    try:
        watchdog = current_watchdog()
    except ConfigError as error:
        return _misconfigured(error)
    trigger = decode(
        headers,
        body,
        now=datetime.now(UTC),
        max_age=watchdog.settings.max_event_age,
    )
    note = getattr(trigger, "reason", "")
    return _respond(watchdog.handle(trigger), note)


def handle_tick() -> Response:
    """A direct request to check every watched service."""
    try:
        watchdog = current_watchdog()
    except ConfigError as error:
        return _misconfigured(error)
    return _respond(watchdog.check_all(source="http"))
