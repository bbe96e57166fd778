"""`python -m bench [--quick]`: run every benchmark and print one line per result.

The watchdog is wired exactly as the function wires it (`build_watchdog` with the
settings from the environment form), to a sandbox in its own process and a webhook
receiver in this one. Its log records are formatted as in production and then
discarded, so their cost is counted without flooding the table.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from bench.cases import DEFAULT_PLAN, QUICK_PLAN, SUITE, Bench, Plan
from bench.measure import format_row, header
from bench.sandbox_process import BenchError, SandboxProcess
from watchdog.alert_delivery import AlertSender
from watchdog.audit_log import AuditLogReader
from watchdog.config import load_settings
from watchdog.logs import JsonFormatter
from watchdog.reconcile import Watchdog
from watchdog.run_api import RunApi
from watchdog.runtime import build_watchdog
from watchdog.sandbox.webhook import WebhookReceiver


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Speed and memory of the watchdog as ratios against the bare "
        "calls it makes, measured in the same run.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few runs of each, on a smaller tick: a smoke run, not a measurement",
    )
    return parser.parse_args(argv)


@contextmanager
def discarded_logs() -> Iterator[None]:
    """Format the watchdog's records as JSON lines, as in production, then drop them."""
    root = logging.getLogger("watchdog")
    saved = (root.handlers[:], root.level, root.propagate)
    with open(os.devnull, "w") as sink:
        handler = logging.StreamHandler(sink)
        handler.setFormatter(JsonFormatter())
        root.handlers[:] = [handler]
        root.setLevel(logging.INFO)
        root.propagate = False
        try:
            yield
        finally:
            root.handlers[:], level, root.propagate = saved
            root.setLevel(level)


def wire_watchdog(sandbox: SandboxProcess, webhook: WebhookReceiver) -> Watchdog:
    """A Watchdog over every sandbox service, built by the function's own wiring."""
    settings = load_settings(
        {
            "WATCHDOG_SERVICES": " ".join(name.full for name in sandbox.services),
            "WATCHDOG_RUN_ENDPOINT": sandbox.run_endpoint,
            "WATCHDOG_LOGGING_ENDPOINT": sandbox.logging_endpoint,
            "WATCHDOG_ALERT_WEBHOOK_URL": webhook.url,
            "WATCHDOG_ALERT_FORMAT": "json",
            "WATCHDOG_SELF_PRINCIPAL": sandbox.default_principal,
            "WATCHDOG_HEALTH_TIMEOUT": "5",
        }
    )
    return build_watchdog(settings)


def close_watchdog(watchdog: Watchdog) -> None:
    """Close the gateways' channels and the alert session."""
    if isinstance(watchdog.run_api, RunApi):
        watchdog.run_api.close()
    if isinstance(watchdog.audit_log, AuditLogReader):
        watchdog.audit_log.close()
    if isinstance(watchdog.sender, AlertSender):
        watchdog.sender.close()


def run(plan: Plan) -> int:
    services = [f"svc-{index:02d}" for index in range(plan.tick_services)]
    print(
        f"bench: Python {platform.python_version()}, {os.cpu_count()} CPUs; "
        "sandbox in its own process, webhook receiver in this one; "
        "medians after warm-up; ratio = watchdog / floor",
        flush=True,
    )
    print(header(), flush=True)
    with (
        discarded_logs(),
        SandboxProcess(services) as sandbox,
        WebhookReceiver(echo=False) as webhook,
    ):
        watchdog = wire_watchdog(sandbox, webhook)
        try:
            bench = Bench(sandbox, webhook, watchdog, plan)
            for benchmark in SUITE:
                for row in benchmark(bench):
                    print(format_row(row), flush=True)
        finally:
            close_watchdog(watchdog)
    return 0


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        return run(QUICK_PLAN if arguments.quick else DEFAULT_PLAN)
    except BenchError as error:
        print(f"bench: stopped: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
