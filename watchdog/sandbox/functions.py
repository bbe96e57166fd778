"""Run the watchdog's entry points under the real functions-framework server.

The demo and the end-to-end tests use this so that requests go through the same
server, request parsing and entry points that Cloud Functions runs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port that was free a moment ago on loopback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on port {port} after {timeout:.0f} s")


def stop_process_group(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Stop a process started with start_new_session=True, and all its children."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class FunctionServer:
    """One `functions-framework --target NAME` process on loopback."""

    def __init__(
        self,
        target: str,
        env: Mapping[str, str],
        *,
        log: IO[bytes] | None = None,
        source: Path = REPO_ROOT / "main.py",
    ) -> None:
        self.target = target
        self.env = dict(env)
        self.log = log
        self.source = source
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 30.0) -> FunctionServer:
        self.port = free_port()
        command = [
            sys.executable,
            "-m",
            "functions_framework",
            "--target",
            self.target,
            "--source",
            str(self.source),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        env = os.environ | self.env | {"PYTHONUNBUFFERED": "1", "THREADS": "8"}
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            command,
            cwd=self.source.parent,
            env=env,
            stdout=self.log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self.log else subprocess.DEVNULL,
            start_new_session=True,  # its own process group, stopped as a whole
        )
        try:
            wait_for_port(self.port, timeout, self.process)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process, timeout=10)
        self.process = None

    def __enter__(self) -> FunctionServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
