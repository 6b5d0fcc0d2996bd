"""The load suite's arithmetic and report without services: verdict rows, overlapping runs, the Markdown table."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from benchsuite import report
from benchsuite.load import CALLS, MODES, PACED, rows_from
from benchsuite.load_jobs import most_at_once


def _cells(errors: int = 0) -> list[dict]:
    cells = []
    for call in CALLS:
        for index, (mode, _, _) in enumerate(MODES):
            for side in ("ours", "baseline"):
                cells.append({"call": call, "mode": mode, "side": side, "calls": 100, "calls_per_s": 100.0 * (index + 1),
                              "p50_ms": 1.0, "p99_ms": 4.0, "errors": errors if side == "ours" else 0,
                              "error_types": {}, "first_error": "boom" if errors else ""})
    for side in ("ours", "baseline"):
        cells.append({"call": "can_access", "mode": PACED, "side": side, "calls": 50, "calls_per_s": 50.0,
                      "p50_ms": 0.3, "p99_ms": 0.6, "errors": 0, "error_types": {}, "first_error": "", "rate": 50.0})
    return cells


def test_verdicts_on_errors_scaling_and_can_access_p99():
    rows = rows_from(_cells(), pool_size=20, seconds=1.0)
    assert [row.met for row in rows] == [True] * len(rows)
    assert rows[0].metric == "errors, every call and concurrency (pool of 20 per process)" and rows[0].ours == 0
    assert {row.metric for row in rows[1:5]} == {f"{call}: throughput at 40 threads (pool 20)" for call in CALLS}
    failing = rows_from(_cells(errors=2), pool_size=20, seconds=1.0)[0]
    assert failing.met is False and failing.ours == 2 * len(CALLS) * len(MODES)
    assert "boom" in failing.detail


def test_most_runs_at_once_counts_overlaps_only():
    t = [datetime.datetime(2026, 1, 1, 0, 0, second) for second in range(10)]
    assert most_at_once([("succeeded", t[0], t[2], None), ("succeeded", t[2], t[4], None)]) == 1
    assert most_at_once([("succeeded", t[0], t[3], None), ("failed", t[2], t[4], None)]) == 2
    assert most_at_once([]) == 0


def test_load_table_sets_pooled_beside_a_connection_per_thread():
    load = {"cells": _cells(), "pool_size": 20, "pool_timeout_s": 30.0, "seconds_per_cell": 1.0,
            "jobs": {"messages": 1000, "job": "precompute_facets", "send_s": 0.2, "workers": "2 processes x 4 threads",
                     "recorded": 1000, "ran": 1, "skipped": 999, "most_at_once": 1, "drain_s": 3.0}}
    table = report._load_table(load)
    assert "| Call | Callers | Pooled: calls/s | p50 | p99 | errors | Connection per thread: calls/s |" in table
    assert "| can_access | 40 threads, paced at 50 calls/s | 50 | 0.300 ms | 0.600 ms | 0 |" in table
    assert "1,000 recorded (1 ran, 999 skipped as overlap, at most 1 at once)" in table
