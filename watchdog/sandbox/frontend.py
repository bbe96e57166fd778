"""The sandbox's HTTP front end: each service's URL, and the control endpoint.

Every service is served under `/s/NAME`, and answers the way Google's front end
does: the request goes through when the service's policy lets everyone in (`allUsers`
as unconditional invoker, or the invoker IAM check disabled) and gets Google's HTML
403 page otherwise, so the health probe meets the real shape of a refusal. There is
no propagation delay: a policy change shows at the next request.

`/control/...` lets a demo or benchmark drive a sandbox running in another process
(faults, the invoker check, the sink URL, state); the routes themselves are the
`Sandbox`'s, passed in as one function.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from watchdog.sandbox.run_service import RpcFailure, RunServices

log = logging.getLogger(__name__)

# (method, path, JSON body or None) -> (HTTP status, JSON answer)
ControlRoutes = Callable[[str, str, Any], tuple[int, Any]]

FORBIDDEN_PAGE = """<html><head>
<meta http-equiv="content-type" content="text/html;charset=utf-8">
<title>403 Forbidden</title>
</head>
<body text=#000000 bgcolor=#ffffff>
<h1>Error: Forbidden</h1>
<h2>Your client does not have permission to get URL <code>{path}</code> from this\
 server.</h2>
<h2></h2>
</body></html>
"""
NOT_FOUND_PAGE = """<html><head>
<meta http-equiv="content-type" content="text/html;charset=utf-8">
<title>404 Page not found</title>
</head>
<body text=#000000 bgcolor=#ffffff>
<h1>Error: Page not found</h1>
<h2>The requested URL was not found on this server.</h2>
<h2></h2>
</body></html>
"""
MAX_CONTROL_BODY = 1 << 20


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], services: RunServices, control: ControlRoutes
    ) -> None:
        super().__init__(address, _Handler)
        self.services = services
        self.control = control


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._route("GET")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_POST(self) -> None:
        self._route("POST")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("frontend: " + format, *args)

    def _route(self, method: str) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/s/"):
            self._serve_service(method, path)
        elif path == "/control" or path.startswith("/control/"):
            self._serve_control(method, path)
        else:
            self._send(404, NOT_FOUND_PAGE, "text/html; charset=UTF-8", method)

    def _serve_service(self, method: str, path: str) -> None:
        name, _, rest = path[len("/s/") :].partition("/")
        try:
            allowed = self.server.services.is_open(name)
        except RpcFailure:
            self._send(404, NOT_FOUND_PAGE, "text/html; charset=UTF-8", method)
            return
        if not allowed:
            page = FORBIDDEN_PAGE.format(path=path)
            self._send(403, page, "text/html; charset=UTF-8", method)
            return
        body = "ok\n" if rest == "health" else f"hello from {name}\n"
        self._send(200, body, "text/plain; charset=utf-8", method)

    def _serve_control(self, method: str, path: str) -> None:
        payload: Any = None
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_CONTROL_BODY:
            self._send_json(413, {"error": "body too large"}, method)
            return
        if length:
            try:
                payload = json.loads(self.rfile.read(length))
            except ValueError as error:
                self._send_json(400, {"error": f"body is not JSON: {error}"}, method)
                return
        status, answer = self.server.control(method, path, payload)
        self._send_json(status, answer, method)

    def _send_json(self, status: int, answer: Any, method: str) -> None:
        text = json.dumps(answer, indent=1, sort_keys=True) + "\n"
        self._send(status, text, "application/json", method)

    def _send(self, status: int, body: str, content_type: str, method: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)


class Frontend:
    """One HTTP server on loopback for every service's URL and for /control."""

    def __init__(
        self, services: RunServices, control: ControlRoutes, host: str = "127.0.0.1"
    ) -> None:
        self._server = _Server((host, 0), services, control)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def service_uri(self, service: str) -> str:
        return f"{self.base_url}/s/{service}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="sandbox-frontend",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
