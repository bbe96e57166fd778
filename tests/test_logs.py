"""Structured log lines: what Cloud Logging parses, and a bad level setting."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from watchdog.logs import JsonFormatter, configure_logging


@pytest.fixture
def fresh_logger() -> Iterator[logging.Logger]:
    """The package logger with no handlers, restored afterwards."""
    root = logging.getLogger("watchdog")
    saved = (root.handlers[:], root.level, root.propagate)
    root.handlers.clear()
    yield root
    root.handlers[:], root.level, root.propagate = saved


def test_record_is_one_json_line_with_severity_message_and_fields() -> None:
    record = logging.LogRecord(
        "watchdog.x", logging.WARNING, "", 0, "drift on %s", ("shop",), None
    )
    record.fields = {"service": "shop", "heartbeat": True}
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["severity"] == "WARNING"
    assert entry["message"] == "drift on shop"
    assert entry["service"] == "shop"
    assert entry["heartbeat"] is True


@pytest.mark.parametrize("level", ["debug", "VERBOSE", "5"])
def test_bad_log_level_falls_back_to_info_and_names_the_variable(
    fresh_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch, level: str
) -> None:
    monkeypatch.setenv("WATCHDOG_LOG_LEVEL", level)
    stream = io.StringIO()
    configure_logging(stream=stream)
    expected = logging.DEBUG if level == "debug" else logging.INFO
    assert fresh_logger.level == expected
    if expected == logging.INFO:
        warning = json.loads(stream.getvalue().splitlines()[0])
        assert "WATCHDOG_LOG_LEVEL" in warning["message"]


def test_configure_twice_moves_the_stream_instead_of_adding_a_handler(
    fresh_logger: logging.Logger,
) -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(stream=first)
    configure_logging(stream=second)
    fresh_logger.warning("hello")
    json_handlers = [
        h for h in fresh_logger.handlers if isinstance(h.formatter, JsonFormatter)
    ]
    assert len(json_handlers) == 1
    assert first.getvalue() == ""
    assert "hello" in second.getvalue()
