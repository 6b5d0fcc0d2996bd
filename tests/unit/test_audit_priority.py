"""The audit maintenance yields the CPU: its thread runs niced, the caller's does not; the archive's pacer rests."""

from __future__ import annotations

import os
import threading
import time

import pytest

from crmtasks.audit import priority
from crmtasks.audit.archive_file import PACING_SLICE_S, _Pacer


def _my_niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_the_pass_runs_niced_in_its_own_thread_and_the_caller_keeps_its_priority():
    before = _my_niceness()
    seen = priority.run_niced(lambda: (_my_niceness(), threading.get_native_id()), 13)
    assert seen[0] == max(13, before)
    assert seen[1] != threading.get_native_id()
    assert _my_niceness() == before


def test_threads_the_pass_starts_inherit_its_niceness():
    def start_a_thread():
        found = []
        thread = threading.Thread(target=lambda: found.append(_my_niceness()))
        thread.start()
        thread.join()
        return found[0]

    assert priority.run_niced(start_a_thread, 11) >= 11


def test_idle_puts_the_pass_and_the_threads_it_starts_in_sched_idle_and_not_the_caller():
    def policies():
        found = []
        thread = threading.Thread(target=lambda: found.append(os.sched_getscheduler(0)))
        thread.start()
        thread.join()
        return os.sched_getscheduler(0), found[0]

    assert priority.run_niced(policies, 0, idle=True) == (os.SCHED_IDLE, os.SCHED_IDLE)
    assert os.sched_getscheduler(0) == os.SCHED_OTHER


def test_niceness_zero_runs_in_the_callers_thread():
    assert priority.run_niced(threading.get_native_id, 0) == threading.get_native_id()


def test_an_error_of_the_pass_is_raised_in_the_caller():
    def fails():
        raise LookupError("no such month")

    with pytest.raises(LookupError, match="no such month"):
        priority.run_niced(fails, 5)


def test_a_paced_copy_rests_its_share_of_each_slice():
    pacer = _Pacer(50)
    time.sleep(PACING_SLICE_S)  # a slice of work (the pacer measures wall time)
    started = time.perf_counter()
    pacer.after_block()
    assert time.perf_counter() - started >= PACING_SLICE_S * 0.9  # 50%: as long a rest as the work


def test_an_unpaced_copy_never_rests():
    pacer = _Pacer(100)
    time.sleep(PACING_SLICE_S)
    started = time.perf_counter()
    pacer.after_block()
    assert time.perf_counter() - started < PACING_SLICE_S / 2
