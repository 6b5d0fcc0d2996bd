"""scripts/benchsuite/processes: a measurement in a child process reports the child's own memory and errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from benchsuite.processes import ChildFailed, peak_rss_mb, run_in_child


def test_a_child_reports_its_own_peak_memory_not_its_parents():
    ballast = bytearray(300 * 2**20)  # touched pages: the parent's resident size is now over 300 MiB
    ballast[::4096] = b"x" * len(ballast[::4096])
    parent = peak_rss_mb()
    child = run_in_child(peak_rss_mb, timeout_s=120)
    assert parent > 300
    assert 0 < child < parent - 250
    del ballast


def test_an_error_in_the_child_is_raised_with_its_traceback():
    with pytest.raises(ChildFailed, match="invalid literal for int"):
        run_in_child(int, "not a number", timeout_s=120)
