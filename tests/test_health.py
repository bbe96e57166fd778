"""The health probe against a real local HTTP server: every answer classified."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from watchdog.health import probe
from watchdog.model import ProbeResult
from watchdog.sandbox.frontend import FORBIDDEN_PAGE, NOT_FOUND_PAGE

# The pages Google's front end serves, as the sandbox's front end serves them.
GOOGLE_403 = FORBIDDEN_PAGE.format(path="/health")
GOOGLE_404 = NOT_FOUND_PAGE

# path -> (status, content type, body, extra headers)
ROUTES: dict[str, tuple[int, str, str, dict[str, str]]] = {
    "/health": (200, "application/json", '{"status": "ok"}', {}),
    "/google-403": (403, "text/html; charset=UTF-8", GOOGLE_403, {}),
    "/app-403": (403, "application/json", '{"error": "token expired"}', {}),
    "/google-404": (404, "text/html; charset=UTF-8", GOOGLE_404, {}),
    "/app-404": (404, "application/json", '{"error": "no such route"}', {}),
    "/slow": (200, "application/json", '{"status": "ok"}', {}),
    "/broken": (500, "text/plain", "internal error", {}),
    "/moved": (302, "text/plain", "", {"Location": "/health"}),
    "/elsewhere": (302, "text/plain", "", {"Location": "http://example.invalid/x"}),
}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        if self.path == "/slow":
            # Longer than the probe's timeout; released early when the server stops.
            self.server.stopping.wait(5)
        status, content_type, body, headers = ROUTES.get(self.path, ROUTES["/app-404"])
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    stopping: threading.Event


@pytest.fixture
def service_url() -> Iterator[str]:
    """A local stand-in for a Cloud Run service URL."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.stopping = threading.Event()
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.stopping.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("path", "result", "status"),
    [
        pytest.param("/health", ProbeResult.OK, 200, id="200-ok"),
        pytest.param("/google-403", ProbeResult.FORBIDDEN, 403, id="front-end-403"),
        pytest.param("/app-403", ProbeResult.FORBIDDEN, 403, id="app-403"),
        pytest.param("/broken", ProbeResult.ERROR, 500, id="500-error"),
        pytest.param("/app-404", ProbeResult.ERROR, 404, id="app-404"),
    ],
)
def test_probe_classifies_the_status(
    service_url: str, path: str, result: ProbeResult, status: int
) -> None:
    found = probe(service_url, path)
    assert (found.result, found.status) == (result, status)


def test_front_end_403_says_iam_may_still_be_propagating(service_url: str) -> None:
    found = probe(service_url, "/google-403")
    assert "Google's front end" in found.detail
    assert "propagate" in found.detail


def test_application_403_is_told_apart_from_the_front_end(service_url: str) -> None:
    found = probe(service_url, "/app-403")
    assert "from the service itself" in found.detail


def test_front_end_404_mentions_ingress(service_url: str) -> None:
    found = probe(service_url, "/google-404")
    assert found.result == ProbeResult.ERROR
    assert "ingress" in found.detail


def test_error_detail_names_the_status(service_url: str) -> None:
    assert "500" in probe(service_url, "/broken").detail


def test_slow_service_is_unreachable_with_the_timeout(service_url: str) -> None:
    found = probe(service_url, "/slow", timeout=0.2)
    assert found.result == ProbeResult.UNREACHABLE
    assert found.detail == "timeout after 0.2s"


def test_closed_port_is_unreachable(closed_port: int) -> None:
    found = probe(f"http://127.0.0.1:{closed_port}", "/health", timeout=1)
    assert (found.result, found.detail) == (
        ProbeResult.UNREACHABLE,
        "connection refused",
    )


def test_unknown_host_is_unreachable_with_dns_reason() -> None:
    # .invalid never resolves (RFC 6761), so no network is needed to see this.
    found = probe("http://watchdog-probe.invalid", "/health", timeout=1)
    assert found.result == ProbeResult.UNREACHABLE
    assert "DNS" in found.detail


def test_trailing_slash_of_the_uri_is_ignored(service_url: str) -> None:
    assert probe(service_url + "/", "/health").result == ProbeResult.OK


def test_same_host_redirect_is_followed(service_url: str) -> None:
    assert probe(service_url, "/moved").result == ProbeResult.OK


def test_redirect_to_another_host_is_not_followed(service_url: str) -> None:
    found = probe(service_url, "/elsewhere")
    assert (found.result, found.status) == (ProbeResult.ERROR, 302)
    assert "another host" in found.detail


def test_probe_records_elapsed_seconds(service_url: str) -> None:
    assert probe(service_url, "/health").seconds > 0


def test_service_without_url_is_skipped() -> None:
    assert probe("", "/health").result == ProbeResult.SKIPPED
