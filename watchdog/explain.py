"""What the watchdog reads from a delivery or LogEntry file (`python -m watchdog
explain FILE`).

It runs the very decoder the function runs, so what it prints is what the function
would do with the same bytes. A file may hold a bare LogEntry, a push envelope, a
gen1 background event, or an HTTP request capture (`{"method", "path", "headers",
"body"}`, as in the corpus) whose headers matter (CloudEvents, Cloud Scheduler).
For an entry the watchdog ignores (another API, a failed parse) the fields it could
read are still shown, because "why was this ignored, and who did it" is the usual
question.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from watchdog.audit import extract_change, format_timestamp
from watchdog.errors import MalformedInput
from watchdog.model import AuditEvent, Change, Ignored, Tick
from watchdog.triggers import decode_delivery

# With no `now`, staleness is not checked: any fixed instant will do.
_NO_CLOCK = datetime(1970, 1, 1, tzinfo=UTC)


def explain(
    document: Mapping[str, Any] | bytes, *, now: datetime | None = None
) -> dict[str, Any]:
    """Decode one file's content as the function would, as a JSON-ready dict.

    Keys: kind ("audit", "tick" or "ignored"), reason (when ignored), delivery,
    service, resource_name, method, actor, origin, delegation (origin first),
    caller_ip, user_agent, time (RFC 3339), insert_id, failed, status_message, and
    removed/added `{role: [members]}` only when the entry states them. With
    `now=None` old ticks are kept; with a `now`, the function's default age limit
    applies.
    """
    headers, body = _as_request(document)
    if now is None:
        decoded = decode_delivery(headers, body, now=_NO_CLOCK, max_age=math.inf)
    else:
        decoded = decode_delivery(headers, body, now=now)
    trigger = decoded.trigger
    result: dict[str, Any] = {
        "kind": "ignored",
        "delivery": "",
        "service": None,
        "resource_name": None,
        "method": None,
        "actor": None,
        "origin": None,
        "delegation": [],
        "caller_ip": None,
        "user_agent": None,
        "time": None,
        "insert_id": None,
        "failed": None,
        "status_message": None,
    }
    change: Change | None = None
    if isinstance(trigger, AuditEvent):
        result.update(kind="audit", delivery=trigger.delivery)
        change = trigger.change
    elif isinstance(trigger, Tick):
        result.update(kind="tick", delivery=trigger.source)
        if trigger.scheduled_at is not None:
            result["time"] = format_timestamp(trigger.scheduled_at)
    elif isinstance(trigger, Ignored):
        result.update(reason=trigger.reason, delivery=trigger.delivery)
        if decoded.entry is not None:
            try:
                change = extract_change(decoded.entry)
            except MalformedInput:
                change = None  # the reason already says why it cannot be read
    if change is not None:
        result.update(_change_fields(change))
    return result


def _change_fields(change: Change) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "service": change.service.full if change.service else None,
        "resource_name": change.resource_name,
        "method": change.method or None,
        "actor": change.actor,
        "origin": change.origin,
        "delegation": list(change.delegation),
        "caller_ip": change.caller_ip,
        "user_agent": change.user_agent,
        "time": format_timestamp(change.time) if change.time else None,
        "insert_id": change.insert_id,
        "failed": change.failed,
        "status_message": change.status_message,
    }
    if change.removed is not None:
        fields["removed"] = {role: list(m) for role, m in change.removed.items()}
    if change.added is not None:
        fields["added"] = {role: list(m) for role, m in change.added.items()}
    if change.invoker_after is not None:
        fields["invoker_after"] = list(change.invoker_after)
    return fields


def _as_request(document: Mapping[str, Any] | bytes) -> tuple[dict[str, str], bytes]:
    """Headers and body: from a request capture, else the document as the body."""
    parsed: Any = document
    if isinstance(document, bytes | bytearray):
        try:
            parsed = json.loads(document)
        except (ValueError, RecursionError):
            return {}, bytes(document)  # not JSON: the decoder says why
    if _is_capture(parsed):
        headers = {str(key): str(value) for key, value in parsed["headers"].items()}
        return headers, _body_bytes(parsed.get("body"))
    if isinstance(document, bytes | bytearray):
        return {}, bytes(document)  # the exact bytes, escapes and all
    return {}, json.dumps(document).encode()


def _is_capture(document: object) -> bool:
    """An HTTP request capture as in the corpus: headers plus a body."""
    return (
        isinstance(document, Mapping)
        and isinstance(document.get("headers"), Mapping)
        and "body" in document
        and ("method" in document or "path" in document)
    )


def _body_bytes(body: object) -> bytes:
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()
