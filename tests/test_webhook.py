"""The sandbox webhook receiver: records POSTs, fails on request, prints a line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from watchdog.sandbox.webhook import WebhookReceiver

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as started:
        yield started


def test_receiver_records_a_json_post(receiver: WebhookReceiver) -> None:
    answer = requests.post(f"{receiver.url}/hook", json={"text": "hello"}, timeout=5)
    alerts = receiver.wait_for(1, timeout=5)
    assert answer.status_code == 200
    assert (alerts[0].path, alerts[0].payload) == ("/hook", {"text": "hello"})


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        pytest.param({"text": "slack or chat"}, "slack or chat", id="text"),
        pytest.param(
            {"summary": "generic json", "service": "x"}, "generic json", id="json"
        ),
    ],
)
def test_received_alert_text_is_the_readable_part(
    receiver: WebhookReceiver, payload: dict[str, str], text: str
) -> None:
    requests.post(receiver.url, json=payload, timeout=5)
    assert receiver.wait_for(1)[0].text == text


def test_receiver_prints_one_line_per_alert(
    receiver: WebhookReceiver, capsys: pytest.CaptureFixture[str]
) -> None:
    requests.post(receiver.url, json={"text": "first line\nsecond line"}, timeout=5)
    receiver.wait_for(1)
    assert "webhook got an alert: first line\n" in capsys.readouterr().out


def test_receiver_fails_the_next_requests_on_request(receiver: WebhookReceiver) -> None:
    receiver.fail_next(2, 503, retry_after="1")
    statuses = [
        requests.post(receiver.url, json={"text": str(n)}, timeout=5) for n in range(3)
    ]
    assert [s.status_code for s in statuses] == [503, 503, 200]
    assert statuses[0].headers["Retry-After"] == "1"
    assert (receiver.attempts, [a.text for a in receiver.alerts]) == (3, ["2"])


def test_wait_for_times_out_with_a_count(receiver: WebhookReceiver) -> None:
    with pytest.raises(TimeoutError, match=r"expected 1 alerts within 0\.05 s, got 0"):
        receiver.wait_for(1, timeout=0.05)


def test_stop_closes_the_port() -> None:
    receiver = WebhookReceiver().start()
    url = receiver.url
    receiver.stop()
    with pytest.raises(requests.ConnectionError):
        requests.post(url, json={}, timeout=1)


def test_module_runs_alone_on_a_given_port() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "watchdog.sandbox.webhook", "--port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ | {"PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        url = banner.rsplit(" ", 1)[-1].strip()
        answer = requests.post(url, json={"text": "from the test"}, timeout=5)
        line = process.stdout.readline()
    finally:
        process.terminate()
        process.wait(timeout=5)
    assert banner.startswith("webhook receiver listening on http://127.0.0.1:")
    assert answer.status_code == 200
    assert line == "webhook got an alert: from the test\n"
