"""A webhook receiver on loopback that shows the alerts it gets.

It stands in for Slack, Google Chat or any JSON webhook: it accepts POSTs, keeps
them in memory for tests, and prints one readable line per alert for the demo's
transcript. It can be told to fail the next few requests, so retries are tested
against a real HTTP server rather than a mocked session.

Run it alone with ``python -m watchdog.sandbox.webhook --port 8099``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

# Larger than any alert the watchdog renders; a bigger body is refused, not read.
MAX_BODY = 1024 * 1024


@dataclass(frozen=True)
class ReceivedAlert:
    """One accepted POST: its path, headers and body (parsed when it is JSON)."""

    path: str
    headers: dict[str, str]
    body: bytes
    payload: Any = None

    @property
    def text(self) -> str:
        """The alert's readable text: Slack/Chat `text`, or the JSON `summary`."""
        if isinstance(self.payload, dict):
            for key in ("text", "summary"):
                value = self.payload.get(key)
                if isinstance(value, str):
                    return value
        return self.body.decode("utf-8", "replace")


@dataclass
class _Failures:
    remaining: int = 0
    status: int = 503
    retry_after: str | None = None


@dataclass
class _State:
    alerts: list[ReceivedAlert] = field(default_factory=list)
    attempts: int = 0
    failures: _Failures = field(default_factory=_Failures)
    changed: threading.Condition = field(default_factory=threading.Condition)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"too large\n")
            self.close_connection = True
            return
        body = self.rfile.read(length)
        with state.changed:
            state.attempts += 1
            failures = state.failures
            failing = failures.remaining > 0
            if failing:
                failures.remaining -= 1
                status, retry_after = failures.status, failures.retry_after
            else:
                alert = ReceivedAlert(
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    payload=_parse(body),
                )
                state.alerts.append(alert)
            state.changed.notify_all()
        if failing:
            extra = {"Retry-After": retry_after} if retry_after else {}
            self._answer(status, b"failing on purpose\n", extra)
            return
        if self.server.echo:
            first_line = (
                alert.text.strip().splitlines()[0] if alert.text.strip() else ""
            )
            print(f"webhook got an alert: {first_line}", flush=True)
        # Slack answers a plain "ok"; other receivers only look at the status.
        self._answer(HTTPStatus.OK, b"ok")

    def _answer(
        self, status: int, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Silence the default access log: the request path is the webhook's secret.
        return


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: _State, echo: bool) -> None:
        super().__init__(address, _Handler)
        self.state = state
        self.echo = echo


class WebhookReceiver:
    """A loopback HTTP server that records POSTed alerts; start()/stop() or `with`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, echo: bool = True):
        self.host = host
        self.port = port
        self.echo = echo
        self._state = _State()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL; any path under it is accepted."""
        if self._server is None:
            raise RuntimeError("the webhook receiver is not started")
        return f"http://{self.host}:{self.port}"

    def start(self) -> WebhookReceiver:
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), self._state, self.echo)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"webhook-receiver-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def alerts(self) -> list[ReceivedAlert]:
        """A copy of the alerts accepted so far, oldest first."""
        with self._state.changed:
            return list(self._state.alerts)

    @property
    def attempts(self) -> int:
        """Every POST seen, including those failed on purpose."""
        with self._state.changed:
            return self._state.attempts

    def fail_next(
        self, count: int, status: int = 503, *, retry_after: str | None = None
    ) -> None:
        """Answer the next `count` POSTs with `status` (and a Retry-After, if given)."""
        with self._state.changed:
            self._state.failures = _Failures(count, status, retry_after)

    def clear(self) -> None:
        with self._state.changed:
            self._state.alerts.clear()
            self._state.attempts = 0
            self._state.failures = _Failures()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedAlert]:
        """Block until at least `count` alerts arrived; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._state.changed:
            while len(self._state.alerts) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"expected {count} alerts within {timeout:g} s, "
                        f"got {len(self._state.alerts)}"
                    )
                self._state.changed.wait(remaining)
            return list(self._state.alerts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m watchdog.sandbox.webhook",
        description="Receive webhook alerts on loopback and print one line each.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--fail", type=int, default=0, help="answer the first N requests with --status"
    )
    parser.add_argument("--status", type=int, default=503)
    options = parser.parse_args(argv)
    receiver = WebhookReceiver(options.host, options.port)
    receiver.start()
    if options.fail:
        receiver.fail_next(options.fail, options.status)
    print(f"webhook receiver listening on {receiver.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
