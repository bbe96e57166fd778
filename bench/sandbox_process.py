"""The sandbox in a process of its own, driven through its HTTP control endpoint.

In the same process the sandbox's gRPC handlers would compete with the watchdog
for the GIL, and tracemalloc would count the server's allocations as the
watchdog's. A separate process is closer to the real thing (the APIs are on other
machines) and, on two cores, gives the server a core of its own. The control
routes call the very same `Sandbox.change_members`, `faults.add_latency` and
`reset` that the tests call in-process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import requests

from watchdog.model import INVOKER_ROLE, ServiceName

REPOSITORY = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 30.0
CONTROL_TIMEOUT = 10.0


class BenchError(RuntimeError):
    """The benchmark could not measure what it means to measure."""


class SandboxProcess:
    """`python -m watchdog.sandbox` as a child process; start()/stop() or `with`."""

    def __init__(self, services: Sequence[str]) -> None:
        self.service_names = tuple(services)
        self.endpoints: dict[str, Any] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self._directory: tempfile.TemporaryDirectory[str] | None = None
        self._stderr: IO[bytes] | None = None
        self._http = requests.Session()

    def start(self) -> SandboxProcess:
        """Start the process and wait for its ready file."""
        self._directory = tempfile.TemporaryDirectory(prefix="bench-sandbox-")
        directory = Path(self._directory.name)
        ready = directory / "ready.json"
        self._stderr = (directory / "stderr.log").open("wb")
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "watchdog.sandbox",
                "--service",
                ",".join(self.service_names),
                "--ready-file",
                str(ready),
                # Per-request INFO records would cost the server time on every call.
                "--log-level",
                "WARNING",
            ],
            cwd=REPOSITORY,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not ready.exists():
            if self._process.poll() is not None:
                message = self._log_tail()
                self.stop()
                raise BenchError(f"the sandbox exited at start-up: {message}")
            if time.monotonic() > deadline:
                self.stop()
                raise BenchError(
                    f"the sandbox was not ready within {STARTUP_TIMEOUT:g} s"
                )
            time.sleep(0.05)
        self.endpoints = json.loads(ready.read_text())
        return self

    def stop(self) -> None:
        """Stop the child process (SIGTERM, then SIGKILL); safe to call twice."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self._http.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if self._directory is not None:
            self._directory.cleanup()
            self._directory = None

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def _log_tail(self) -> str:
        if self._directory is None or self._stderr is None:
            return ""
        self._stderr.flush()
        text = (Path(self._directory.name) / "stderr.log").read_text(errors="replace")
        return text.strip()[-2000:] or "(no output)"

    # Where things are.

    @property
    def run_endpoint(self) -> str:
        return str(self.endpoints["run_endpoint"])

    @property
    def logging_endpoint(self) -> str:
        return str(self.endpoints["logging_endpoint"])

    @property
    def default_principal(self) -> str:
        return str(self.endpoints["default_principal"])

    @property
    def services(self) -> list[ServiceName]:
        return [ServiceName.parse(s["name"]) for s in self.endpoints["services"]]

    def uri(self, name: ServiceName) -> str:
        for service in self.endpoints["services"]:
            if service["name"] == name.full:
                return str(service["uri"])
        raise KeyError(name.full)

    # The control endpoint.

    def control(self, method: str, route: str, body: object = None) -> Any:
        """Call `/control/ROUTE`; the JSON answer, or BenchError on a non-2xx."""
        url = f"{self.endpoints['control']}/{route}"
        response = self._http.request(method, url, json=body, timeout=CONTROL_TIMEOUT)
        if not response.ok:
            raise BenchError(
                f"sandbox control {method} /control/{route} answered "
                f"{response.status_code}: {response.text.strip()[:300]}"
            )
        return response.json()

    def reset(self) -> None:
        """Every service public with its initial policy; no faults, no entries."""
        self.control("POST", "reset")

    def remove_public_access(self, name: ServiceName, principal: str) -> None:
        """`principal` removes allUsers from the invoker role (change_members)."""
        self.control(
            "POST",
            "iam",
            {
                "service": name.full,
                "remove": {INVOKER_ROLE: ["allUsers"]},
                "principal": principal,
            },
        )

    def add_latency(self, method: str, seconds: float) -> None:
        """Delay every call of `method` (faults.add_latency)."""
        self.control(
            "POST", "fault", {"kind": "latency", "method": method, "seconds": seconds}
        )

    def entries(self) -> list[dict[str, Any]]:
        """Every audit entry the sandbox wrote so far, oldest first."""
        entries = self.control("GET", "entries")
        assert isinstance(entries, list)
        return entries
