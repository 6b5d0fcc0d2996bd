"""scripts/benchsuite/audit: writer latencies are put in the maintenance step running when each insert started,
and the baseline pools every window alone (before, between and after the maintenance runs)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from benchsuite.audit import Round, baseline_latencies, latencies_by_step, step_of, timing_steps  # noqa: E402

from crmtasks.audit import maintenance, retention  # noqa: E402

INTERVALS = [("premake", 10.0, 10.5), ("archive", 11.0, 13.0), ("drop", 13.0, 13.4)]


def test_an_insert_belongs_to_the_step_running_when_it_started():
    assert step_of(10.2, INTERVALS) == "premake"
    assert step_of(10.7, INTERVALS) == "between steps"
    assert step_of(12.0, INTERVALS) == "archive"


def test_latencies_by_step_and_pooled_baseline():
    one = Round("default", baseline=(0.0, 5.0), maintenance=(10.0, 14.0), intervals=INTERVALS, stats={}, run_s=4.0)
    closing = Round("closing", baseline=(20.0, 25.0), maintenance=(0.0, 0.0), intervals=[], stats={}, run_s=0.0)
    samples = [(1.0, 0.5, None), (10.1, 3.0, None), (12.5, 9.0, None), (12.6, 1.0, "OperationalError: x"),
               (13.2, 4.0, None), (21.0, 0.7, None), (30.0, 99.0, None)]
    assert latencies_by_step(one, samples) == {"premake": [3.0], "archive": [9.0], "drop": [4.0]}
    assert baseline_latencies([one, closing], samples) == [0.5, 0.7]


def test_timing_steps_records_each_step_and_puts_the_functions_back():
    intervals: list = []
    original = maintenance.count_past_months
    with timing_steps(intervals):
        assert maintenance.count_past_months is not original
        assert retention.archive_detached.__name__ == "run_step"
    assert maintenance.count_past_months is original
    assert retention.archive_detached.__name__ == "archive_detached"
