"""Structured logging in Cloud Logging's JSON-line format.

On Cloud Functions, a JSON object printed on one line becomes a structured entry:
`severity` sets the level, `message` is what the console shows, every other key is
searchable (`jsonPayload.service="..."`). Log-based alerts key on these fields, so
they work even when every webhook is down.

Use a module logger and pass fields through ``extra={"fields": {...}}``::

    log.warning("drift found on %s", name, extra={"fields": {"service": name}})
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}


def _plain(value: Any) -> Any:
    """Make a value JSON-friendly without losing what a reader needs."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: severity, message, logger, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelno, "DEFAULT"),
            "message": record.getMessage(),
            "logger": record.name,
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat()
            .replace("+00:00", "Z"),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                entry.setdefault(key, _plain(value))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def configure_logging(
    level: str | None = None, *, stream: TextIO | None = None
) -> None:
    """Send the package's records to `stream` (stdout) as JSON lines; idempotent.

    A bad WATCHDOG_LOG_LEVEL falls back to INFO with a warning naming the
    variable: refusing to log would leave the watchdog silent, and failing
    every request over it would make Pub/Sub redeliver forever.
    """
    root = logging.getLogger("watchdog")
    for existing in root.handlers:
        if isinstance(existing, logging.StreamHandler) and isinstance(
            existing.formatter, JsonFormatter
        ):
            if stream is None:
                return
            # Not setStream(): it flushes the old stream, which may be closed.
            root.removeHandler(existing)
            break
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.propagate = False
    wanted = level or os.environ.get("WATCHDOG_LOG_LEVEL", "") or "INFO"
    if wanted.upper() in LEVELS:
        root.setLevel(wanted.upper())
        return
    root.setLevel(logging.INFO)
    root.warning(
        "WATCHDOG_LOG_LEVEL=%r is not one of %s; logging at INFO",
        wanted,
        ", ".join(LEVELS),
    )
