"""Medians of interleaved runs, tracemalloc peaks, and the table they print as.

Floor and watchdog runs alternate (floor, watchdog, floor, ...) so that a drift in
the machine's speed during the run (another process, CPU frequency, a growing log
store in the sandbox) lands on both sides of the ratio instead of one.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Action = Callable[[], object]

Kind = Literal["time", "memory"]


@dataclass(frozen=True)
class Comparison:
    """One table row: the floor's and the watchdog's medians, and what the floor is."""

    name: str
    floor: float  # seconds, or bytes for memory
    watchdog: float
    kind: Kind
    note: str
    runs: int

    @property
    def ratio(self) -> float:
        return self.watchdog / self.floor if self.floor > 0 else math.inf


def _no_setup() -> None:
    return None


def median_times(
    floor: Action,
    watchdog: Action,
    *,
    runs: int,
    warmup: int,
    batch: int = 1,
    setup: Callable[[], object] = _no_setup,
) -> tuple[float, float]:
    """Median seconds per call of each; `setup` runs untimed before every sample.

    A sample is `batch` calls timed together (for calls of a few microseconds, where
    the clock's own cost would otherwise show); its time is divided by `batch`.
    """
    floor_samples: list[float] = []
    watchdog_samples: list[float] = []
    for round_number in range(warmup + runs):
        for action, samples in ((floor, floor_samples), (watchdog, watchdog_samples)):
            setup()
            started = time.perf_counter()
            for _ in range(batch):
                action()
            elapsed = (time.perf_counter() - started) / batch
            if round_number >= warmup:
                samples.append(elapsed)
    return statistics.median(floor_samples), statistics.median(watchdog_samples)


def median_peaks(
    floor: Action,
    watchdog: Action,
    *,
    runs: int,
    setup: Callable[[], object] = _no_setup,
) -> tuple[float, float]:
    """Median tracemalloc peak, in bytes above the traced memory before the call.

    Run the timing benchmarks first: lazily built clients and caches are then
    already in place, and the peak is the steady-state cost of one call.

    NB: tracemalloc sees the Python allocators only. gRPC's C core, OpenSSL and
    thread stacks are invisible to it, so these peaks are the Python objects a call
    builds, not the process's resident memory.
    """
    floor_peaks: list[float] = []
    watchdog_peaks: list[float] = []
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start()
    try:
        for _ in range(runs):
            for action, peaks in ((floor, floor_peaks), (watchdog, watchdog_peaks)):
                setup()
                gc.collect()
                tracemalloc.reset_peak()
                before, _ = tracemalloc.get_traced_memory()
                result = action()
                _, peak = tracemalloc.get_traced_memory()
                del result
                peaks.append(float(peak - before))
    finally:
        if started_here:
            tracemalloc.stop()
    return statistics.median(floor_peaks), statistics.median(watchdog_peaks)


def format_seconds(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.3f} s"


def format_bytes(size: float) -> str:
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.2f} MiB"


_COLUMNS = (
    ("benchmark", 34),
    ("floor", 11),
    ("watchdog", 11),
    ("ratio", 8),
    ("runs", 5),
)


def header() -> str:
    """The table's heading line."""
    cells = [title.ljust(width) for title, width in _COLUMNS]
    return " ".join(cells) + " floor is"


def format_row(row: Comparison) -> str:
    """One line: name, floor median, watchdog median, ratio, runs, the floor's note."""
    show = format_seconds if row.kind == "time" else format_bytes
    ratio = "x inf" if math.isinf(row.ratio) else f"x{row.ratio:.2f}"
    values = (row.name, show(row.floor), show(row.watchdog), ratio, str(row.runs))
    cells = [
        value.ljust(width) for value, (_, width) in zip(values, _COLUMNS, strict=True)
    ]
    return " ".join(cells) + " " + row.note
