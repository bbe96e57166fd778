"""Run the sandbox as a process: `python -m watchdog.sandbox --service public-api`.

It prints one JSON line with its endpoints on stdout (and writes it to --ready-file),
logs JSON lines on stderr, and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from watchdog.logs import JsonFormatter
from watchdog.sandbox.server import DEFAULT_SERVICES, Sandbox

log = logging.getLogger("watchdog.sandbox")


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m watchdog.sandbox",
        description="Local Cloud Run Admin, Cloud Logging and front-end stand-ins.",
    )
    parser.add_argument("--project", default="demo-project")
    parser.add_argument("--location", default="europe-west1")
    parser.add_argument(
        "--service",
        default=",".join(DEFAULT_SERVICES),
        help="service short names, comma-separated; each starts public",
    )
    parser.add_argument(
        "--principal",
        default=None,
        help="caller when a request names none (default: the watchdog's account)",
    )
    parser.add_argument(
        "--sink-url",
        default=None,
        help="where audit entries are pushed (with --pubsub-emulator: the push "
        "endpoint of the subscription)",
    )
    parser.add_argument(
        "--pubsub-emulator", default=None, metavar="HOST:PORT", help="publish there"
    )
    parser.add_argument("--topic", default=None, help="topic for --pubsub-emulator")
    parser.add_argument(
        "--policy-delta",
        action="store_true",
        help="add serviceData.policyDelta to entries (real Cloud Run entries have "
        "not been seen with it)",
    )
    parser.add_argument("--ready-file", type=Path, default=None)
    parser.add_argument("--log-level", default=os.environ.get("WATCHDOG_LOG_LEVEL"))
    arguments = parser.parse_args(argv)
    if bool(arguments.pubsub_emulator) != bool(arguments.topic):
        parser.error("--pubsub-emulator and --topic go together")
    return arguments


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    # Logs go to stderr so stdout carries only the ready line.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("watchdog")
    root.addHandler(handler)
    root.setLevel(arguments.log_level or "INFO")
    root.propagate = False

    stopping = threading.Event()

    def request_stop(number: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    services = [name.strip() for name in arguments.service.split(",") if name.strip()]
    sandbox = Sandbox(
        arguments.project,
        arguments.location,
        services,
        default_principal=arguments.principal,
        sink_url=arguments.sink_url,
        pubsub_emulator_host=arguments.pubsub_emulator,
        topic=arguments.topic,
        policy_delta=arguments.policy_delta,
    )
    with sandbox:
        ready = json.dumps(sandbox.endpoints())
        if arguments.ready_file:
            temporary = arguments.ready_file.with_suffix(".tmp")
            temporary.write_text(ready + "\n")
            temporary.replace(arguments.ready_file)  # readers never see half a file
        print(ready, flush=True)
        stopping.wait()
        log.info("sandbox stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main())
