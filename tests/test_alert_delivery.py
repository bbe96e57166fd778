"""Alert delivery to a webhook receiver and Pub/Sub; the URL never leaks."""

from __future__ import annotations

import json
import logging
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest
from requests.utils import requote_uri

from tests.alert_samples import (
    DEPLOYER,
    INCIDENTS,
    RECOVERY,
    REPEATED,
    SECRET_PATH,
    huge,
)
from watchdog.alert_delivery import AlertSender, DeliveryResult
from watchdog.alerts import (
    SLACK_BLOCK_LIMIT,
    render_json,
    render_text,
)
from watchdog.errors import ConfigError
from watchdog.logs import JsonFormatter
from watchdog.sandbox.webhook import WebhookReceiver

# --- delivery to the webhook ------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(echo=False) as started:
        yield started


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def every_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture every logger at DEBUG, urllib3's included."""
    caplog.set_level(logging.DEBUG)
    return caplog


def sender_for(url: str, alert_format: str = "slack", **options: Any) -> AlertSender:
    # A short backoff keeps the retry tests fast; the policy is the real one.
    settings: dict[str, Any] = {"timeout": 2, "backoff_factor": 0.01} | options
    return AlertSender(webhook_url=url, alert_format=alert_format, **settings)


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every record as text and as the JSON line Cloud Logging would get."""
    formatter = JsonFormatter()
    return "\n".join(
        [caplog.text]
        + [record.getMessage() for record in caplog.records]
        + [formatter.format(record) for record in caplog.records]
    )


@pytest.mark.parametrize(
    ("alert_format", "key"),
    [
        pytest.param("slack", "blocks", id="slack"),
        pytest.param("chat", "text", id="chat"),
        pytest.param("json", "service", id="json"),
    ],
)
def test_alert_arrives_at_the_webhook(
    receiver: WebhookReceiver, alert_format: str, key: str
) -> None:
    sender = sender_for(receiver.url + SECRET_PATH, alert_format)
    results = sender.send(INCIDENTS["restored-wif"])
    alert = receiver.wait_for(1)[0]
    assert key in alert.payload
    assert alert.path == SECRET_PATH
    assert [(r.channel, r.ok) for r in results] == [
        ("log", True),
        (f"webhook ({alert_format})", True),
    ]


def test_webhook_is_retried_after_503s(receiver: WebhookReceiver) -> None:
    receiver.fail_next(2, 503)
    results = sender_for(receiver.url + SECRET_PATH).send(INCIDENTS["restored-wif"])
    assert results[-1].ok
    assert (receiver.attempts, len(receiver.alerts)) == (3, 1)


def test_webhook_is_retried_after_429_with_retry_after(
    receiver: WebhookReceiver,
) -> None:
    receiver.fail_next(1, 429, retry_after="0")
    results = sender_for(receiver.url + SECRET_PATH).send(INCIDENTS["restored-wif"])
    assert results[-1].ok
    assert receiver.attempts == 2


def test_webhook_that_keeps_failing_gives_a_failed_result(
    receiver: WebhookReceiver,
) -> None:
    receiver.fail_next(100, 503)
    results = sender_for(receiver.url + SECRET_PATH).send(INCIDENTS["restored-wif"])
    assert (results[-1].channel, results[-1].ok) == ("webhook (slack)", False)
    assert "503" in results[-1].detail


def test_structured_record_is_written_even_when_the_webhook_fails(
    receiver: WebhookReceiver, every_log: pytest.LogCaptureFixture
) -> None:
    receiver.fail_next(100, 500)
    sender_for(receiver.url + SECRET_PATH).send(INCIDENTS["restored-wif"])
    alerts = [r for r in every_log.records if getattr(r, "fields", {}).get("alert")]
    assert len(alerts) == 1
    assert (
        alerts[0].getMessage() == render_text(INCIDENTS["restored-wif"]).split("\n")[0]
    )
    assert alerts[0].fields["actor"] == DEPLOYER  # type: ignore[attr-defined]


def test_failed_webhook_is_logged_at_error_without_the_url(
    receiver: WebhookReceiver, every_log: pytest.LogCaptureFixture
) -> None:
    receiver.fail_next(100, 500)
    sender_for(receiver.url + SECRET_PATH).send(INCIDENTS["restored-wif"])
    failures = [r for r in every_log.records if "delivery" in r.getMessage()]
    assert [r.levelno for r in failures] == [logging.ERROR]
    assert "webhook (slack)" in failures[0].getMessage()


def test_unreachable_webhook_never_leaks_the_url(
    closed_port: int,
    every_log: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{closed_port}{SECRET_PATH}"
    results = sender_for(url).send(INCIDENTS["restored-wif"])
    captured = capsys.readouterr()
    assert not results[-1].ok
    everything = everything_logged(every_log) + captured.out + captured.err
    everything += "".join(r.detail for r in results)
    assert "Retrying" in everything  # urllib3 did log its retries, redacted
    assert "SECRETTOKEN" not in everything


def test_failing_webhook_never_leaks_the_url(
    receiver: WebhookReceiver,
    every_log: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    receiver.fail_next(100, 503)
    results = sender_for(receiver.url + SECRET_PATH).send(
        INCIDENTS["failed-org-policy"]
    )
    captured = capsys.readouterr()
    everything = everything_logged(every_log) + captured.out + captured.err
    everything += "".join(r.detail for r in results)
    assert "SECRETTOKEN" not in everything


@pytest.mark.parametrize(
    ("case", "level"),
    [
        pytest.param("restored-wif", logging.WARNING, id="restored-warning"),
        pytest.param("report-mode", logging.WARNING, id="reported-warning"),
        pytest.param("failed-org-policy", logging.ERROR, id="failed-error"),
    ],
)
def test_alert_record_level_follows_the_action(
    every_log: pytest.LogCaptureFixture, case: str, level: int
) -> None:
    AlertSender(webhook_url=None, alert_format="json").send(INCIDENTS[case])
    alerts = [r for r in every_log.records if getattr(r, "fields", {}).get("alert")]
    assert [r.levelno for r in alerts] == [level]


def test_no_channels_still_logs_the_incident() -> None:
    results = AlertSender(webhook_url=None, alert_format="json").send(
        INCIDENTS["restored-wif"]
    )
    assert [(r.channel, r.ok) for r in results] == [("log", True)]


def test_oversized_incident_is_still_delivered(receiver: WebhookReceiver) -> None:
    results = sender_for(receiver.url + SECRET_PATH).send(huge())
    assert results[-1].ok
    assert len(receiver.wait_for(1)[0].payload["blocks"]) <= SLACK_BLOCK_LIMIT


def test_repr_hides_the_webhook_url() -> None:
    sender = sender_for("https://hooks.slack.com" + SECRET_PATH)
    assert "SECRETTOKEN" not in repr(sender)
    assert "hooks.slack.com" not in repr(sender)


def test_unknown_alert_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="WATCHDOG_ALERT_FORMAT"):
        AlertSender(webhook_url=None, alert_format="teams")


# --- Pub/Sub, through Google's emulator -------------------------------------------


def pull_some(subscriber: Any, subscription: str) -> list[Any]:
    """Pull until something arrives; the emulator may answer a pull with nothing."""
    for _ in range(20):
        response = subscriber.pull(
            subscription=subscription, max_messages=5, timeout=10
        )
        if response.received_messages:
            return list(response.received_messages)
    return []


def test_alert_is_published_to_the_topic(
    pubsub_emulator: str, monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    from google.cloud import pubsub_v1

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator)
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    suffix = uuid.uuid4().hex[:8]
    topic = publisher.topic_path("demo-project", f"alerts-{suffix}")
    subscription = subscriber.subscription_path("demo-project", f"alerts-{suffix}")
    publisher.create_topic(name=topic, timeout=10)
    subscriber.create_subscription(name=subscription, topic=topic, timeout=10)
    # The webhook is down: Pub/Sub must be delivered all the same.
    sender = sender_for(
        f"http://127.0.0.1:{closed_port}{SECRET_PATH}", "json", topic=topic
    )
    try:
        results = sender.send(INCIDENTS["restored-wif"])
        received = pull_some(subscriber, subscription)
    finally:
        sender.close()
        subscriber.close()
    assert [(r.channel, r.ok) for r in results] == [
        ("log", True),
        ("webhook (json)", False),
        (f"pubsub ({topic})", True),
    ]
    [message] = received
    assert json.loads(message.message.data) == render_json(INCIDENTS["restored-wif"])
    assert message.message.attributes["action"] == "restored"


def test_many_changed_roles_are_cut_with_a_count() -> None:
    added = next(
        line for line in render_text(huge()).splitlines() if line.startswith("added:")
    )
    assert added.endswith("… and 490 more roles")


def test_missing_topic_gives_a_failed_result(
    pubsub_emulator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator)
    topic = f"projects/demo-project/topics/never-created-{uuid.uuid4().hex[:8]}"
    sender = AlertSender(webhook_url=None, alert_format="json", topic=topic, timeout=5)
    try:
        results = sender.send(INCIDENTS["restored-wif"])
    finally:
        sender.close()
    assert (results[-1].ok, results[-1].detail.split(":")[0]) == (False, "NotFound")


# --- memory: what a suppressed incident and a recovery send ------------------


def test_suppressed_incident_is_logged_at_its_level_and_not_sent(
    receiver: WebhookReceiver, every_log: pytest.LogCaptureFixture
) -> None:
    results = sender_for(receiver.url + SECRET_PATH).send(REPEATED)
    assert [r.channel for r in results] == ["log"]
    assert receiver.alerts == []
    records = [r for r in every_log.records if "suppressed" in getattr(r, "fields", {})]
    assert [r.levelno for r in records] == [logging.ERROR]
    fields = records[0].fields  # type: ignore[attr-defined]
    assert (fields["suppressed"], fields["alert"]) == (True, False)
    assert "failing for 37 min, 38 checks" in records[0].getMessage()


def test_recovery_is_delivered_and_logged_at_info(
    receiver: WebhookReceiver, every_log: pytest.LogCaptureFixture
) -> None:
    results = sender_for(receiver.url + SECRET_PATH, "json").send(RECOVERY)
    assert [r.ok for r in results] == [True, True]
    assert receiver.wait_for(1)[0].payload["kind"] == "recovery"
    logged = [r for r in every_log.records if getattr(r, "fields", {}).get("alert")]
    assert [r.levelno for r in logged] == [logging.INFO]


# --- the webhook URL never leaks, in any spelling or cut --------------------------

SECRET_MARKER = "zzSECRET"
SLACK_LIKE_PATH = f"/services/T0AAAAAAA/B0BBBBBBB/{SECRET_MARKER}qqqqqqqqqqqqqqqq"


class _ScriptedHandler(BaseHTTPRequestHandler):
    server: ScriptedWebhook
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        script = self.server
        script.attempts += 1
        if script.hang:
            # Hold the answer until the test ends: the client's read times out.
            script.released.wait(10)
            self.close_connection = True
            return
        body = script.answer(self.path).encode("utf-8")
        self.send_response(script.status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if script.location:
            self.send_header("Location", script.location)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class ScriptedWebhook(ThreadingHTTPServer):
    """A webhook on loopback that answers every POST the way a test sets it up.

    The sandbox receiver answers failures with a fixed body; these tests need a
    body that echoes the request path, a redirect, or no answer at all.
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        self.status = 200
        self.answer: Callable[[str], str] = lambda path: "ok"
        self.location = ""
        self.hang = False
        self.attempts = 0
        self.released = threading.Event()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def scripted() -> Iterator[ScriptedWebhook]:
    server = ScriptedWebhook()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.released.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def assert_nowhere(
    marker: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    results: list[DeliveryResult],
) -> None:
    """`marker` is in no record, JSON line, stdout, stderr or result."""
    captured = capsys.readouterr()
    places = {
        "log": everything_logged(caplog),
        "stdout": captured.out,
        "stderr": captured.err,
        "results": repr(results),
    }
    assert {place: marker in text for place, text in places.items()} == dict.fromkeys(
        places, False
    )


def _padded(base: str, path: str) -> str:
    # Long enough that the old cut-then-redact cut the URL in the middle.
    return "x" * 100 + path + "y" * 100


def _json_escaped_slashes(base: str, path: str) -> str:
    return json.dumps({"error": f"no such hook: {base}{path}"}).replace("/", "\\/")


def _decoded(base: str, path: str) -> str:
    return f"no such hook: {base}{unquote(path)}"


def _unicode_escaped(base: str, path: str) -> str:
    escaped = json.dumps({"error": f"no such hook: {base}{unquote(path)}"})
    return escaped.replace("/", "\\/")


ECHOES = [
    pytest.param(SLACK_LIKE_PATH, _padded, id="path-padded-in-a-long-body"),
    pytest.param(SLACK_LIKE_PATH, _json_escaped_slashes, id="json-escaped-slashes"),
    pytest.param(
        "/services/T0AAAAAAA/B0BBBBBBB/zzSECRET%2Fqqqqqqqq",
        _decoded,
        id="percent-encoded-slash-echoed-decoded",
    ),
    pytest.param(
        "/services/T0AAAAAAA/B0BBBBBBB/zzSECRETé-qqqqqqqq",
        _decoded,
        id="non-ascii-echoed-decoded",
    ),
    pytest.param(
        "/services/T0AAAAAAA/B0BBBBBBB/zzSECRETé-qqqqqqqq",
        _unicode_escaped,
        id="non-ascii-echoed-unicode-escaped",
    ),
]


@pytest.mark.parametrize(("path", "echo"), ECHOES)
def test_error_body_echoing_the_url_is_never_logged_or_returned(
    scripted: ScriptedWebhook,
    every_log: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    path: str,
    echo: Callable[[str, str], str],
) -> None:
    scripted.status = 500
    scripted.answer = lambda received: echo(scripted.base, received)
    results = sender_for(scripted.base + path).send(INCIDENTS["restored-wif"])
    assert results[-1].detail == "answered 500 Internal Server Error (4 attempts)"
    assert_nowhere(SECRET_MARKER, every_log, capsys, results)


def test_long_invalid_url_is_reported_without_its_value(
    every_log: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "http://127.0.0.1:99999/x/" + "S" * 470 + SECRET_MARKER
    results = sender_for(url).send(INCIDENTS["restored-wif"])
    assert (results[-1].ok, results[-1].detail) == (
        False,
        "invalid webhook URL (value not shown); nothing was sent",
    )
    assert_nowhere(SECRET_MARKER, every_log, capsys, results)
    assert_nowhere("SSSSSSSS", every_log, capsys, results)


def test_unreachable_webhook_says_refused_and_how_many_attempts(
    closed_port: int,
    every_log: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{closed_port}{SLACK_LIKE_PATH}"
    results = sender_for(url).send(INCIDENTS["restored-wif"])
    assert results[-1].detail == "connection refused (4 attempts)"
    assert_nowhere(SECRET_MARKER, every_log, capsys, results)


def test_read_timeout_is_reported_as_a_read_timeout(
    scripted: ScriptedWebhook,
    every_log: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scripted.hang = True
    sender = sender_for(scripted.base + SLACK_LIKE_PATH, timeout=0.2)
    results = sender.send(INCIDENTS["restored-wif"])
    sender.close()
    assert results[-1].detail == (
        "read timeout: no answer within 0.2 s; the alert may have arrived (2 attempts)"
    )
    assert_nowhere(SECRET_MARKER, every_log, capsys, results)


def test_redirect_is_not_followed_and_not_called_a_retry(
    scripted: ScriptedWebhook,
    every_log: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scripted.status = 302
    scripted.location = "https://elsewhere.example/" + SECRET_MARKER
    results = sender_for(scripted.base + SLACK_LIKE_PATH).send(
        INCIDENTS["restored-wif"]
    )
    assert (results[-1].ok, results[-1].detail) == (
        False,
        "answered 302 Found, a redirect: not followed, since it would send the "
        "alert somewhere not configured (1 attempt)",
    )
    assert scripted.attempts == 1
    assert_nowhere(SECRET_MARKER, every_log, capsys, results)


def test_retried_status_counts_every_attempt(receiver: WebhookReceiver) -> None:
    receiver.fail_next(100, 503)
    results = sender_for(receiver.url + SECRET_PATH).send(INCIDENTS["restored-wif"])
    assert results[-1].detail == "answered 503 Service Unavailable (4 attempts)"
    assert receiver.attempts == 4


def test_success_names_the_status_and_its_phrase(receiver: WebhookReceiver) -> None:
    results = sender_for(receiver.url + SECRET_PATH).send(INCIDENTS["restored-wif"])
    assert results[-1].detail == "answered 200 OK (1 attempt)"


def _spellings_of(url: str) -> list[str]:
    path = urlsplit(url).path
    return [
        url,
        path,
        requote_uri(path),
        requote_uri(path).lower(),
        unquote(path),
        quote(unquote(path), safe=""),
        json.dumps(unquote(path)).replace("/", "\\/"),
        url[: len(url) - 5],  # cut at the end, as a truncating logger would
        "…" + path[20:],  # cut at the start
    ]


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://hooks.example" + SLACK_LIKE_PATH, id="slack-like"),
        pytest.param(
            "https://hooks.example/v1/spaces/AAAA/messages?key=k&token="
            f"{SECRET_MARKER}%2Fé-qqqqqqqq",
            id="chat-like-query",
        ),
    ],
)
def test_urllib3_records_are_scrubbed_in_every_spelling(
    every_log: pytest.LogCaptureFixture, url: str
) -> None:
    sender_for(url)  # installs the scrubber on urllib3's loggers
    urllib3_log = logging.getLogger("urllib3.connectionpool")
    for spelling in _spellings_of(url):
        urllib3_log.warning("Retrying (Retry(total=3)) after error: %s", spelling)
    assert SECRET_MARKER.lower() not in everything_logged(every_log).lower()
