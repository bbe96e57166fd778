"""Shared fixtures. Area fixtures live in tests/fixtures_*.py, loaded here."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures_sandbox", "tests.fixtures_state"]

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "samples"


@pytest.fixture(autouse=True)
def _restore_environment() -> Iterator[None]:
    """Keep each test's environment changes to itself."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
