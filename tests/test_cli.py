"""`python -m watchdog`: exit codes a CI job can rely on, and the demo itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CORPUS
from tests.fixtures_sandbox import INTERN, PUBLIC_API, SHOP
from watchdog.cli import EXIT_DRIFT, EXIT_ERROR, EXIT_OK, main
from watchdog.model import INVOKER_ROLE
from watchdog.sandbox import Sandbox
from watchdog.sandbox.functions import REPO_ROOT


@pytest.fixture
def sandbox_env(sandbox: Sandbox) -> Sandbox:
    os.environ.update(
        {
            "WATCHDOG_SERVICES": f"{PUBLIC_API.full} {SHOP.full}",
            "WATCHDOG_RUN_ENDPOINT": sandbox.run_endpoint,
            "WATCHDOG_LOGGING_ENDPOINT": sandbox.logging_endpoint,
            "WATCHDOG_HEALTH_TIMEOUT": "2",
        }
    )
    return sandbox


def test_check_exits_0_when_everything_is_in_sync(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--json"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert [r["action"] for r in report] == ["none", "none"]


def test_check_exits_0_after_restoring(sandbox_env: Sandbox) -> None:
    sandbox_env.change_members(
        SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal=INTERN
    )
    assert main(["check"]) == EXIT_OK
    assert sandbox_env.is_public(SHOP)


def test_check_exits_1_when_drift_remains_in_report_mode(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    os.environ["WATCHDOG_MODE"] = "report"
    sandbox_env.change_members(
        SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal=INTERN
    )
    assert main(["check", "--json"]) == EXIT_DRIFT
    report = {r["service"]: r for r in json.loads(capsys.readouterr().out)}
    assert report[SHOP.full]["missing"] == ["allUsers"]
    assert not sandbox_env.is_public(SHOP)


def test_check_exits_1_when_the_restore_is_refused(sandbox_env: Sandbox) -> None:
    sandbox_env.change_members(
        SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal=INTERN
    )
    sandbox_env.faults.block_public_members()
    assert main(["check"]) == EXIT_DRIFT


def test_check_exits_2_on_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    os.environ.pop("WATCHDOG_SERVICES", None)
    assert main(["check"]) == EXIT_ERROR
    assert "WATCHDOG_SERVICES" in capsys.readouterr().err


def test_check_exits_2_when_the_api_stays_down(sandbox_env: Sandbox) -> None:
    sandbox_env.faults.fail("GetService", "UNAVAILABLE", times=100)
    assert main(["check"]) == EXIT_ERROR


def test_check_exits_2_when_permission_is_denied(sandbox_env: Sandbox) -> None:
    sandbox_env.faults.fail("GetService", "PERMISSION_DENIED", times=10)
    assert main(["check"]) == EXIT_ERROR


def test_check_exits_2_for_a_service_that_does_not_exist(sandbox_env: Sandbox) -> None:
    missing = "projects/demo-project/locations/europe-west1/services/no-such"
    os.environ["WATCHDOG_SERVICES"] = missing
    assert main(["check"]) == EXIT_ERROR


def test_check_json_stays_valid_json_when_records_are_logged(
    sandbox_env: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox_env.change_members(
        SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal=INTERN
    )
    assert main(["check", "--json"]) == EXIT_OK
    captured = capsys.readouterr()
    report = {r["service"]: r["action"] for r in json.loads(captured.out)}
    assert report[SHOP.full] == "restored"
    assert "restored" in captured.err  # the alert record went to stderr


def test_explain_prints_the_actor_of_a_corpus_entry(
    capsys: pytest.CaptureFixture[str],
) -> None:
    sample = CORPUS / "auditlog_run_v2_setiampolicy_wif_github_impersonation.json"
    assert main(["explain", str(sample), "--json"]) == EXIT_OK
    explained = json.loads(capsys.readouterr().out)
    assert explained["kind"] == "audit"
    assert explained["actor"] == "deployer@example-project.iam.gserviceaccount.com"
    assert explained["origin"].startswith("principal://iam.googleapis.com/")


def test_explain_of_a_missing_file_exits_2(tmp_path: object) -> None:
    assert main(["explain", "/nonexistent/entry.json"]) == EXIT_ERROR


def _helper_processes() -> set[int]:
    """PIDs of function servers and emulators running on this machine now."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if b"functions_framework" in command or b"pubsub" in command:
            found.add(int(entry.name))
    return found


def test_demo_plays_all_three_scenarios_and_leaves_nothing_running() -> None:
    """`make demo` as a user runs it: a real process, a readable transcript."""
    before = _helper_processes()
    result = subprocess.run(
        [sys.executable, "-m", "watchdog", "demo"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    transcript = result.stdout
    assert "who: intern@example.com" in transcript
    assert "who: deploy-bot@demo-project.iam.gserviceaccount.com" in transcript
    assert "who: contractor@example.com" in transcript
    assert "all three restored and alerted" in transcript
    assert _helper_processes() - before == set()
