"""The benchmark suite runs end to end, as `make bench` runs it, in its quick form.

A smoke test only. Times and ratios depend on the machine and are never asserted
(the style guide: speed is measured in bench/, not checked in tests); what is
checked is that every benchmark ran and printed its ratio line.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cases import BENCHMARKS

REPOSITORY = Path(__file__).resolve().parent.parent
RATIO = re.compile(r" x(\d+\.\d\d|inf) ")


@pytest.fixture(scope="module")
def quick_run() -> subprocess.CompletedProcess[str]:
    """One quick run of the whole suite, shared by the tests below."""
    return subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_quick_run_exits_zero(quick_run: subprocess.CompletedProcess[str]) -> None:
    assert quick_run.returncode == 0, quick_run.stderr


@pytest.mark.parametrize(
    "name", BENCHMARKS, ids=[re.sub(r"\W+", "-", name) for name in BENCHMARKS]
)
def test_quick_run_prints_a_ratio_line(
    quick_run: subprocess.CompletedProcess[str], name: str
) -> None:
    lines = [line for line in quick_run.stdout.splitlines() if line.startswith(name)]
    assert len(lines) == 1, quick_run.stdout
    assert RATIO.search(lines[0]), lines[0]
