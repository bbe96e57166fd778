"""Fixtures for tests that talk to the local sandbox with the real client libraries.

`sandbox` is a fresh in-process sandbox per test (it starts in milliseconds) with two
public services, `public-api` and `shop`. `run_api` and `audit_log_reader` are the
project's gateways pointed at it. `push_receiver` is a tiny HTTP server that records
what is POSTed to it (a log sink's push target). `pubsub_emulator` is Google's
Pub/Sub emulator, started once per session, or a skip with the reason when this
machine cannot run it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from watchdog.audit_log import AuditLogReader
from watchdog.model import ServiceName
from watchdog.run_api import RunApi
from watchdog.sandbox import Sandbox
from watchdog.sandbox.emulator import PubSubEmulator, missing_requirement

PROJECT = "demo-project"
LOCATION = "europe-west1"
PUBLIC_API = ServiceName(PROJECT, LOCATION, "public-api")
SHOP = ServiceName(PROJECT, LOCATION, "shop")
INTERN = "intern@example.com"
WATCHDOG_PRINCIPAL = f"watchdog@{PROJECT}.iam.gserviceaccount.com"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A started sandbox with `public-api` and `shop`, both public."""
    with Sandbox(PROJECT, LOCATION, ("public-api", "shop")) as started:
        yield started


@pytest.fixture
def run_api(sandbox: Sandbox) -> Iterator[RunApi]:
    """The Cloud Run gateway, talking to `sandbox`."""
    api = RunApi(sandbox.run_endpoint, timeout=5.0)
    yield api
    api.close()


@pytest.fixture
def audit_log_reader(sandbox: Sandbox) -> Iterator[AuditLogReader]:
    """The Cloud Logging gateway, talking to `sandbox`."""
    reader = AuditLogReader(sandbox.logging_endpoint, timeout=5.0)
    yield reader
    reader.close()


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: Any  # the decoded JSON body


class PushReceiver:
    """Records JSON POSTs; answers each with `status` (204 unless told otherwise)."""

    def __init__(self) -> None:
        self.status = 204
        self._received: list[Received] = []
        self._arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                status = receiver.status
                with receiver._arrived:
                    receiver._received.append(
                        Received(self.path, dict(self.headers.items()), body)
                    )
                    receiver._arrived.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/audit"

    @property
    def received(self) -> list[Received]:
        with self._arrived:
            return list(self._received)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """The first `count` requests, waiting up to `timeout` for them."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self._received) >= count, timeout)
            return list(self._received)

    def start(self) -> PushReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def push_receiver() -> Iterator[PushReceiver]:
    receiver = PushReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[str]:
    """`host:port` of a Pub/Sub emulator shared by the session; skips without one."""
    if reason := missing_requirement():
        print(f"skipping: {reason}")
        pytest.skip(f"Pub/Sub emulator unavailable: {reason}")
    with PubSubEmulator(PROJECT) as emulator:
        yield emulator.host
