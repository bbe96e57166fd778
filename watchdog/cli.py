"""`python -m watchdog`: check now, explain an entry, check a deployment, play the demo.

Exit codes fit CI use: 0 all in sync (or restored), 1 drift remains, 2 an error
(bad settings, unreadable file, an API that could not be reached).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from watchdog import doctor
from watchdog.config import load_settings
from watchdog.errors import WatchdogError
from watchdog.logs import configure_logging
from watchdog.model import Action

EXIT_OK, EXIT_DRIFT, EXIT_ERROR = 0, 1, 2


def run_check(as_json: bool) -> int:
    """Check every service in WATCHDOG_SERVICES once, as a tick would."""
    from watchdog.runtime import build_watchdog

    # Log records go to stderr so that stdout is only the report (JSON or text).
    configure_logging(stream=sys.stderr)
    settings = load_settings(os.environ)
    outcomes = build_watchdog(settings).check_all(source="cli")
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "service": o.service.full,
                        "action": str(o.action),
                        "missing": list(o.drift.missing),
                        "forbidden": list(o.drift.forbidden),
                        "detail": o.detail,
                    }
                    for o in outcomes
                ],
                indent=2,
            )
        )
    else:
        for o in outcomes:
            print(f"{o.action:>9}  {o.service.full}  {o.detail}".rstrip())
    # A failure before any drift was known (API down, permission denied, no
    # such service, no credentials) is an error; drift that stayed is drift.
    if any(o.action == Action.FAILED and not o.drift for o in outcomes):
        return EXIT_ERROR
    if any(o.action in (Action.FAILED, Action.REPORTED) for o in outcomes):
        return EXIT_DRIFT
    return EXIT_OK


def run_explain(path: Path, as_json: bool) -> int:
    """Print what the watchdog reads from a delivery or LogEntry file."""
    from watchdog.explain import explain

    try:
        document = path.read_bytes()
    except OSError as error:
        print(f"cannot read {path}: {error.strerror}", file=sys.stderr)
        return EXIT_ERROR
    result = explain(document)
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        for key, value in result.items():
            print(f"{key:>10}: {value}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m watchdog",
        description="Keeps public Cloud Run services public.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="check every watched service now")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    explain = commands.add_parser(
        "explain", help="show what the watchdog reads from a delivery or log entry"
    )
    explain.add_argument("file", type=Path)
    explain.add_argument("--json", action="store_true", help="machine-readable output")
    commands.add_parser("demo", help="play the incident on the local sandbox")
    doctor.register(commands)
    args = parser.parse_args(argv)

    try:
        if args.command == "check":
            return run_check(args.json)
        if args.command == "explain":
            return run_explain(args.file, args.json)
        if args.command == "doctor":
            return doctor.run(args)
        from watchdog.demo import run_demo

        return run_demo()
    except WatchdogError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
