"""Start and stop Google's Pub/Sub and Firestore emulators from google-cloud-cli.

Each emulator is a Java process started through `gcloud`; it runs in a process
group of its own so that stopping it stops Java too and leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from watchdog.sandbox.functions import free_port, stop_process_group, wait_for_port


def _missing(label: str, component: str) -> str | None:
    """Why an emulator cannot run on this machine, or None when it can."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return "gcloud (google-cloud-cli) is not installed"
    if shutil.which("java") is None:
        return f"java is not installed (the {label} emulator needs it)"
    # Without the component, `gcloud ... start` would try to install it (a
    # download, and a prompt).
    installed = Path(os.path.realpath(gcloud)).parents[1] / "platform" / component
    if not installed.is_dir():
        return (
            f"the {component} component of google-cloud-cli is not installed "
            f"(no {installed})"
        )
    return None


def missing_requirement() -> str | None:
    """Why the Pub/Sub emulator cannot run here, or None when it can."""
    return _missing(PubSubEmulator.label, PubSubEmulator.component)


def missing_firestore_emulator() -> str | None:
    """Why the Firestore emulator cannot run here, or None when it can."""
    return _missing(FirestoreEmulator.label, FirestoreEmulator.component)


def _wait_for_group_exit(group: int, timeout: float) -> None:
    """Kill what is left of a process group once its leader has gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        return


class _Emulator:
    """One `gcloud ... emulators X start` on a free loopback port."""

    label: ClassVar[str]
    component: ClassVar[str]  # the google-cloud-cli component that ships it
    arguments: ClassVar[tuple[str, ...]]  # after `gcloud`, before --host-port
    start_timeout: ClassVar[float] = 60.0

    def __init__(self, project: str = "demo-project") -> None:
        self.project = project
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in __exit__

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Self:
        if reason := _missing(self.label, self.component):
            raise RuntimeError(f"cannot start the {self.label} emulator: {reason}")
        self.port = free_port()
        gcloud = shutil.which("gcloud") or "gcloud"
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [
                gcloud,
                *self.arguments,
                f"--host-port={self.host}",
                f"--project={self.project}",
                "--quiet",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=os.environ | {"CLOUDSDK_CORE_DISABLE_PROMPTS": "1"},
        )
        try:
            wait_for_port(self.port, self.start_timeout, self.process)
        except BaseException:
            self.stop()
            raise
        return self

    def output(self) -> str:
        """What the emulator printed so far (for a failure message)."""
        if self._log.closed:
            return ""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def stop(self) -> None:
        """Stop gcloud and Java: the whole process group, SIGKILL if it lingers."""
        if self.process is not None:
            group = self.process.pid
            stop_process_group(self.process, timeout=15)
            # gcloud can exit before Java does; the group outlives its leader.
            _wait_for_group_exit(group, timeout=10)
        self.process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
        self._log.close()


class PubSubEmulator(_Emulator):
    """`gcloud beta emulators pubsub start`; clients reach it at `host`."""

    label = "Pub/Sub"
    component = "pubsub-emulator"
    arguments = ("beta", "emulators", "pubsub", "start")


class FirestoreEmulator(_Emulator):
    """`gcloud emulators firestore start` (native mode).

    Clients reach it through FIRESTORE_EMULATOR_HOST=`host`. Its data lives in
    memory and is gone when it stops; named databases work without creation.
    """

    label = "Firestore"
    component = "cloud-firestore-emulator"
    arguments = ("emulators", "firestore", "start")
    start_timeout = 90.0
