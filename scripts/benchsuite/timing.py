"""Timing helpers shared by the benchmarks: percentiles, interleaved sampling, machine speed.

Every duration here is in milliseconds, measured with ``time.perf_counter``.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence


def ms_since(started: float) -> float:
    """Milliseconds elapsed since ``started`` (a ``time.perf_counter()`` reading)."""
    return (time.perf_counter() - started) * 1000


def percentile(samples: Sequence[float], share: float) -> float:
    """The nearest-rank percentile: the smallest sample that ``share`` (0..1) of the samples are at or below."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = math.ceil(share * len(ordered) - 1e-9)  # the tolerance keeps 0.95 * 100 at rank 95
    return ordered[min(len(ordered), max(1, rank)) - 1]


def timed(function: Callable, arguments: Sequence, repeat: int, warmup: int = 3) -> list[float]:
    """Milliseconds per call of ``function(argument)``, cycling through ``arguments``, after ``warmup`` calls."""
    for i in range(warmup):
        function(arguments[i % len(arguments)])
    samples = []
    for i in range(repeat):
        started = time.perf_counter()
        function(arguments[i % len(arguments)])
        samples.append(ms_since(started))
    return samples


def interleaved(sides: dict[str, Callable], arguments: Sequence, repeat: int, warmup: int = 2) -> dict[str, list[float]]:
    """Milliseconds per call of each side, the sides called in turn with the same argument.

    ``sides`` maps a name to a function of one argument. Round i calls every
    side with ``arguments[i % len(arguments)]`` before moving on, so a change
    in machine load during the run hits every side alike (instead of all of
    one side's samples being taken in a quiet minute). The order of the sides
    alternates each round, so neither always runs right after the other.
    """
    names = list(sides)
    for i in range(warmup):
        for name in names:
            sides[name](arguments[i % len(arguments)])
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(repeat):
        argument = arguments[i % len(arguments)]
        for name in (names if i % 2 == 0 else names[::-1]):
            started = time.perf_counter()
            sides[name](argument)
            samples[name].append(ms_since(started))
    return samples


def summary(samples: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99, mean and count of ``samples`` (milliseconds)."""
    return {"p50": statistics.median(samples), "p95": percentile(samples, 0.95), "p99": percentile(samples, 0.99),
            "mean": statistics.fmean(samples), "count": len(samples)}


def calibration_ms(conn) -> float:
    """Median milliseconds of ``SELECT count(*) FROM generate_series(1, 1000000)``: the machine's speed right now.

    About 60 ms on an idle core of the development machine; a higher figure
    means other processes are using the CPUs and every timing is inflated.
    """
    samples = []
    with conn.cursor() as cur:
        for _ in range(5):
            started = time.perf_counter()
            cur.execute("SELECT count(*) FROM generate_series(1, 1000000)")
            cur.fetchall()
            samples.append(ms_since(started))
    return statistics.median(samples)
