"""Turn any HTTP delivery into a tick, an audit event, or a reason to ignore it.

The function's `on_event` entry point is an HTTP function and hands every request
here as headers and raw bytes, so no framework conversion can reject a legal shape
before we see it (PITFALLS 1). Every shape that can reach the function is decided
on purpose:

- an Eventarc audit CloudEvent (`google.cloud.audit.log.v1.written`, binary or
  structured): `data` is the LogEntry;
- an Eventarc Pub/Sub CloudEvent (`google.cloud.pubsub.topic.v1.messagePublished`):
  `data` is a push envelope, the message is `data.message`;
- a raw Pub/Sub push body (a push subscription aimed at the function, the
  emulator): `{"message": {...}, "subscription": ...}`, no `ce-*` headers;
- a gen1 background event (`context` + `data`, or `eventType` + `data` at the top):
  `data` is the message itself;
- a Cloud Scheduler HTTP target (`User-Agent: Google-Cloud-Scheduler`,
  `X-CloudScheduler*` headers): a tick, whatever the body, empty included;
- a bare LogEntry posted by hand (`protoPayload` / `logName`): read as an entry.

A Pub/Sub message whose data decodes to a LogEntry is an audit event (a log sink
published it). Any other message is a tick: the scheduler's topic carries whatever
payload the job was given, including none at all (attributes only). Both layouts of
an audit entry, Eventarc's plain `data` and the sink's base64, go to the same
parser and give the same change (PITFALLS 2).

Nothing here raises. Anything that can never succeed (garbage, an unknown CloudEvent
type, an entry about another API or an unwatched method, an audit entry that
cannot be read) comes back as `Ignored` with the reason, and the entry point logs
it and answers 2xx: a retry would only bring the same bytes back (PITFALLS 12).
Ticks older than `max_age` are ignored too, so a backlog does not replay a storm
of full checks; audit events are never dropped for age, because the attribution
is still worth having and the check reads the current policy anyway.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cloudevents import exceptions as cloudevent_errors
from cloudevents.http import from_http

from watchdog import methods
from watchdog.audit import (
    describe_entry,
    format_timestamp,
    looks_like_log_entry,
    parse_entry,
    parse_timestamp,
)
from watchdog.errors import MalformedInput
from watchdog.model import AuditEvent, Ignored, Tick, Trigger

AUDIT_WRITTEN = "google.cloud.audit.log.v1.written"
PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
BACKGROUND_PUBSUB_TYPES = (
    "google.pubsub.topic.publish",
    "providers/cloud.pubsub/eventTypes/topic.publish",
)

# Delivery names, as AuditEvent.delivery, Tick.source and Ignored.delivery.
EVENTARC_AUDIT = "eventarc-audit"
PUBSUB_CLOUDEVENT = "pubsub-cloudevent"
PUBSUB_PUSH = "pubsub-push"
SCHEDULER_HTTP = "scheduler-http"
BACKGROUND_EVENT = "background-event"
LOG_ENTRY = "log-entry"
CLOUDEVENT = "cloudevent"
HTTP = "http"

_CLOUDEVENT_DELIVERIES = {
    AUDIT_WRITTEN: EVENTARC_AUDIT,
    PUBSUB_PUBLISHED: PUBSUB_CLOUDEVENT,
}

_PREVIEW = 80


@dataclass(frozen=True)
class Decoded:
    """A decoded delivery: the trigger, and the LogEntry it carried, if any."""

    trigger: Trigger
    entry: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class _Message:
    """A Pub/Sub message, whichever envelope it came in."""

    data: str | None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    message_id: str | None = None
    publish_time: datetime | None = None


def decode(
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime,
    max_age: float = 300.0,
) -> Trigger:
    """Decide what one HTTP delivery asks of the watchdog; never raises.

    `now` is the time of receipt (aware, UTC); a tick scheduled more than
    `max_age` seconds before it is ignored as stale. Pass `math.inf` to keep
    every tick.
    """
    return decode_delivery(headers, body, now=now, max_age=max_age).trigger


def decode_delivery(
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime,
    max_age: float = 300.0,
) -> Decoded:
    """Like `decode`, and also hand back the LogEntry the delivery carried."""
    lowered = {str(key).lower(): str(value) for key, value in headers.items()}
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    clock = _Clock(now, max_age)
    content_type = lowered.get("content-type", "").lower()
    if "ce-specversion" in lowered or content_type.startswith(
        "application/cloudevents"
    ):
        return _decode_cloudevent(lowered, body, clock)
    if _from_scheduler(lowered):
        return Decoded(clock.tick(SCHEDULER_HTTP, _schedule_time(lowered)))
    if not body.strip():
        return Decoded(
            Ignored("empty body and no Cloud Scheduler or CloudEvent headers", HTTP)
        )
    document, problem = _load_json(body)
    if problem:
        return Decoded(Ignored(f"body is not JSON ({problem})", HTTP))
    if not isinstance(document, Mapping):
        return Decoded(
            Ignored(f"body is JSON {type(document).__name__}, not an object", HTTP)
        )
    if "specversion" in document:
        # A structured CloudEvent sent as application/json rather than
        # application/cloudevents+json: the library reads it the same way.
        return _decode_cloudevent(lowered, body, clock)
    if "message" in document:
        return _decode_envelope(document, PUBSUB_PUSH, clock)
    if _is_background_event(document):
        return _decode_background(document, clock)
    if looks_like_log_entry(document):
        return _decode_entry(document, LOG_ENTRY)
    return Decoded(Ignored(_unknown_shape(document), HTTP))


@dataclass(frozen=True)
class _Clock:
    now: datetime
    max_age: float

    def tick(self, source: str, scheduled_at: datetime | None) -> Tick | Ignored:
        """A tick, unless it was scheduled too long ago to be worth running."""
        if scheduled_at is not None and not math.isinf(self.max_age):
            age = (self.now - scheduled_at).total_seconds()
            if age > self.max_age:
                return Ignored(
                    f"stale tick: scheduled at {format_timestamp(scheduled_at)}, "
                    f"{age:.0f} s before receipt, over the {self.max_age:.0f} s "
                    "limit (WATCHDOG_MAX_EVENT_AGE); a newer tick checks instead",
                    source,
                )
        return Tick(source, scheduled_at)


def _decode_cloudevent(
    headers: Mapping[str, str], body: bytes, clock: _Clock
) -> Decoded:
    structured = (
        headers.get("content-type", "").lower().startswith("application/cloudevents")
    )
    if structured or "ce-specversion" not in headers:
        # Structured mode (chosen by the content type, even beside ce-* headers):
        # the library reads the body as JSON itself and fails with an
        # AttributeError on anything but an object, so check that first.
        document, problem = _load_json(body)
        if problem or not isinstance(document, Mapping):
            reason = problem or f"JSON {type(document).__name__}, not an object"
            return Decoded(Ignored(f"structured CloudEvent body is {reason}", HTTP))
    try:
        # The identity unmarshaller keeps binary-mode data as bytes, so JSON is
        # parsed in one place (_load_json) with one set of failure reasons.
        event = from_http(headers, body, data_unmarshaller=lambda data: data)
    except (cloudevent_errors.GenericException, ValueError, TypeError) as error:
        # Besides its own exceptions, the library raises ValueError for a null or
        # wrongly typed required attribute and TypeError for a specversion that is
        # not a string.
        return Decoded(
            Ignored(f"not a valid CloudEvent: {_preview(str(error))}", CLOUDEVENT)
        )
    event_type = str(event.get("type") or "")
    delivery = _CLOUDEVENT_DELIVERIES.get(event_type)
    if delivery is None:
        return Decoded(
            Ignored(
                f"CloudEvent type {_preview(event_type)!r} is not one the watchdog "
                f"handles (expected {AUDIT_WRITTEN} or {PUBSUB_PUBLISHED})",
                CLOUDEVENT,
            )
        )
    data = event.get_data()
    if isinstance(data, bytes | str):
        data, problem = _load_json(data.encode() if isinstance(data, str) else data)
        if problem:
            return Decoded(
                Ignored(f"{event_type} event data is not JSON ({problem})", delivery)
            )
    if event_type == AUDIT_WRITTEN:
        if not isinstance(data, Mapping):
            return Decoded(
                Ignored(f"audit event data is {_kind(data)}, not a LogEntry", delivery)
            )
        return _decode_entry(data, delivery)
    if not isinstance(data, Mapping) or "message" not in data:
        return Decoded(
            Ignored(f"Pub/Sub event data is {_kind(data)} without a message", delivery)
        )
    # NB: the event's own `time` is not used for staleness: functions-framework and
    # the cloudevents library set it to the time of receipt when it is missing.
    return _decode_envelope(data, delivery, clock)


def _decode_envelope(
    envelope: Mapping[str, Any], delivery: str, clock: _Clock
) -> Decoded:
    """A push body or Pub/Sub CloudEvent data: `{"message": {...}, ...}`."""
    message = _read_message(envelope.get("message"))
    if isinstance(message, str):
        return Decoded(Ignored(message, delivery))
    return _decode_message(message, delivery, clock)


def _decode_background(document: Mapping[str, Any], clock: _Clock) -> Decoded:
    """A gen1 background event: the Pub/Sub message is `data` itself."""
    context = document.get("context")
    if not isinstance(context, Mapping):
        context = document  # the older layout keeps the context at the top level
    event_type = context.get("eventType") or context.get("event_type")
    if event_type not in BACKGROUND_PUBSUB_TYPES:
        return Decoded(
            Ignored(
                f"background event type {_preview(str(event_type))!r} is not Pub/Sub",
                BACKGROUND_EVENT,
            )
        )
    message = _read_message(document.get("data"))
    if isinstance(message, str):
        return Decoded(Ignored(message, BACKGROUND_EVENT))
    if message.publish_time is None:
        message = _Message(
            message.data,
            message.attributes,
            message.message_id or _optional_text(context.get("eventId")),
            _optional_time(context.get("timestamp")),
        )
    return _decode_message(message, BACKGROUND_EVENT, clock)


def _decode_message(message: _Message, delivery: str, clock: _Clock) -> Decoded:
    """A LogEntry from a log sink is an audit event; any other message is a tick."""
    if not message.data:
        return Decoded(clock.tick(delivery, message.publish_time))
    try:
        raw = base64.b64decode(message.data, validate=True)
    except ValueError:  # binascii.Error, or non-ASCII text
        return Decoded(
            Ignored(
                f"Pub/Sub message {message.message_id or '(no id)'} data is not "
                f"base64: {_preview(message.data)!r}",
                delivery,
            )
        )
    document, _ = _load_json(raw)
    if looks_like_log_entry(document):
        return _decode_entry(document, delivery)
    return Decoded(clock.tick(delivery, message.publish_time))


def _decode_entry(entry: Mapping[str, Any], delivery: str) -> Decoded:
    """An audit event for a watched Cloud Run method, else the reason it is not."""
    try:
        change = parse_entry(entry)
    except MalformedInput as error:
        return Decoded(Ignored(f"unreadable audit entry: {error}", delivery), entry)
    if change is None:
        return Decoded(
            Ignored(
                f"{describe_entry(entry)} is not about a Cloud Run service", delivery
            ),
            entry,
        )
    if change.service is None:
        return Decoded(
            Ignored(
                f"{change.method} on {change.resource_name} names no region anywhere "
                "in the entry; the next tick checks the service",
                delivery,
            ),
            entry,
        )
    if change.method not in methods.WATCHED_METHODS:
        return Decoded(
            Ignored(
                f"{change.method} on {change.service} cannot change who may invoke it",
                delivery,
            ),
            entry,
        )
    return Decoded(AuditEvent(change, delivery), entry)


def _read_message(value: object) -> _Message | str:
    """A Pub/Sub message in either spelling, or the reason it is not one."""
    if not isinstance(value, Mapping):
        return f"Pub/Sub message is {_kind(value)}, not an object"
    data = value.get("data")
    if data is not None and not isinstance(data, str):
        return f"Pub/Sub message data is {_kind(data)}, not base64 text"
    attributes = value.get("attributes")
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, Mapping):
        return f"Pub/Sub message attributes are {_kind(attributes)}, not an object"
    return _Message(
        data=data,
        attributes=attributes,
        message_id=_optional_text(_either(value, "messageId", "message_id")),
        publish_time=_optional_time(_either(value, "publishTime", "publish_time")),
    )


def _from_scheduler(headers: Mapping[str, str]) -> bool:
    return headers.get("user-agent", "").startswith("Google-Cloud-Scheduler") or any(
        key.startswith("x-cloudscheduler") for key in headers
    )


def _schedule_time(headers: Mapping[str, str]) -> datetime | None:
    return _optional_time(headers.get("x-cloudscheduler-scheduletime"))


def _is_background_event(document: Mapping[str, Any]) -> bool:
    if "data" not in document:
        return False
    return isinstance(document.get("context"), Mapping) or (
        "eventType" in document or "event_type" in document
    )


def _unknown_shape(document: Mapping[str, Any]) -> str:
    keys = ", ".join(sorted(str(key) for key in document)[:8]) or "none"
    reason = (
        f"JSON object with keys [{_preview(keys)}] is no delivery the watchdog knows"
    )
    if document and set(document) <= {"version", "etag", "bindings", "auditConfigs"}:
        reason += "; it looks like an IAM policy, which is read, never delivered"
    return reason


def _load_json(raw: bytes) -> tuple[Any, str]:
    """The decoded document and "", or None and why it is not JSON."""
    try:
        return json.loads(raw), ""
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except ValueError as error:  # JSONDecodeError, or an absurdly long number
        return None, f"{error.__class__.__name__}: {_preview(str(error))}"
    except RecursionError:
        return None, "nested too deeply"


def _either(mapping: Mapping[str, Any], camel: str, snake: str) -> Any:
    return mapping[camel] if camel in mapping else mapping.get(snake)


def _optional_text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _optional_time(value: object) -> datetime | None:
    """A timestamp, or None when absent or unreadable (a tick is still a tick)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


def _kind(value: object) -> str:
    return "absent" if value is None else type(value).__name__


def _preview(text: str) -> str:
    return text if len(text) <= _PREVIEW else text[: _PREVIEW - 3] + "..."
