"""Start and stop Google's Pub/Sub emulator from the installed google-cloud-cli.

The emulator is a Java process started through `gcloud`; it runs in a process
group of its own so that stopping it stops Java too and leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from types import TracebackType

from watchdog.sandbox.functions import free_port, stop_process_group, wait_for_port


def missing_requirement() -> str | None:
    """Why the emulator cannot run on this machine, or None when it can."""
    if shutil.which("gcloud") is None:
        return "gcloud (google-cloud-cli) is not installed"
    if shutil.which("java") is None:
        return "java is not installed (the Pub/Sub emulator needs Java 7+)"
    return None


class PubSubEmulator:
    """`gcloud beta emulators pubsub start` on a free loopback port."""

    def __init__(self, project: str = "demo-project") -> None:
        self.project = project
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> PubSubEmulator:
        if reason := missing_requirement():
            raise RuntimeError(f"cannot start the Pub/Sub emulator: {reason}")
        self.port = free_port()
        gcloud = shutil.which("gcloud") or "gcloud"
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [
                gcloud,
                "beta",
                "emulators",
                "pubsub",
                "start",
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
            wait_for_port(self.port, timeout, self.process)
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
        if self.process is not None:
            stop_process_group(self.process, timeout=15)
        self.process = None

    def __enter__(self) -> PubSubEmulator:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
        self._log.close()
