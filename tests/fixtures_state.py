"""Fixtures for tests of the watchdog's memory: Google's Firestore emulator.

`firestore_emulator` is the emulator's `host:port`, started once per session (a
Java start-up takes seconds) or a skip that says why this machine cannot run it.
Tests keep apart by using a collection of their own (`state_collection`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.fixtures_sandbox import PROJECT
from watchdog.sandbox.emulator import FirestoreEmulator, missing_firestore_emulator


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[str]:
    """`host:port` of a Firestore emulator shared by the session; skips without."""
    if reason := missing_firestore_emulator():
        print(f"skipping: {reason}")
        pytest.skip(f"Firestore emulator unavailable: {reason}")
    with FirestoreEmulator(PROJECT) as emulator:
        yield emulator.host


@pytest.fixture
def state_collection() -> str:
    """A collection name no other test uses."""
    return f"watchdog-services-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def firestore_env(
    firestore_emulator: str, state_collection: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Settings for firestore mode against the emulator, in a fresh collection."""
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator)
    return {
        "WATCHDOG_STATE": "firestore",
        "WATCHDOG_FIRESTORE_DATABASE": "public-watchdog",
        "WATCHDOG_STATE_COLLECTION": state_collection,
    }
