"""The deployable zip runs on its own: unpacked, under functions-framework.

This catches what a green run from the work tree hides: a module the function
imports but the zip leaves out, or code that only works beside the tests.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import requests

from tests.fixtures_sandbox import INTERN, PUBLIC_API, SHOP, WATCHDOG_PRINCIPAL
from tools.package import build_zip
from watchdog.model import INVOKER_ROLE
from watchdog.sandbox import Sandbox
from watchdog.sandbox.functions import FunctionServer


def test_unpacked_zip_restores_a_service_under_functions_framework(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    archive = build_zip(output=tmp_path / "function.zip")
    unpacked = tmp_path / "function"
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(unpacked)
    assert not (unpacked / "watchdog" / "sandbox").exists()
    sandbox.change_members(SHOP, remove={INVOKER_ROLE: ["allUsers"]}, principal=INTERN)
    env = {
        "WATCHDOG_SERVICES": f"{PUBLIC_API.full} {SHOP.full}",
        "WATCHDOG_RUN_ENDPOINT": sandbox.run_endpoint,
        "WATCHDOG_LOGGING_ENDPOINT": sandbox.logging_endpoint,
        "WATCHDOG_SELF_PRINCIPAL": WATCHDOG_PRINCIPAL,
        # Only the unpacked copy may be importable, not the work tree.
        "PYTHONPATH": str(unpacked),
        "PYTHONSAFEPATH": "1",
    }

    with FunctionServer("on_tick", env, source=unpacked / "main.py") as server:
        answer = requests.post(server.url, timeout=30)

    assert answer.status_code == 200, answer.text
    actions = {o["service"]: o["action"] for o in answer.json()["outcomes"]}
    assert actions[SHOP.full] == "restored"
    assert sandbox.is_public(SHOP)
