"""Admission (crmtasks.pg.admission): a bounded number of holders, the rest in line in order, a bounded wait."""

from __future__ import annotations

import re
import threading
import time

import pytest

from crmtasks.pg.admission import Admission
from crmtasks.settings import SettingsError, load_settings


class Late(Exception):
    pass


def _wait_until(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_at_most_places_run_at_once():
    admission = Admission(2, 10, Late)
    inside, most, lock = [0], [0], threading.Lock()

    def caller() -> None:
        for _ in range(50):
            with admission:
                with lock:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0.0005)
                with lock:
                    inside[0] -= 1

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 2
    assert admission.waiting == 0


def test_callers_in_line_are_admitted_first_come_first_served():
    admission = Admission(1, 10, Late)
    order: list[int] = []
    release = threading.Event()

    def caller(index: int) -> None:
        with admission:
            if index == 0:
                release.wait(10)
            order.append(index)

    threads = []
    for index in range(6):
        thread = threading.Thread(target=caller, args=(index,))
        thread.start()
        threads.append(thread)
        _wait_until(lambda index=index: admission.waiting == index)  # in line before the next one asks
    release.set()
    for thread in threads:
        thread.join()
    assert order == [0, 1, 2, 3, 4, 5]


def test_a_caller_that_waits_too_long_gets_the_error_and_leaves_the_line():
    admission = Admission(1, 0.05, Late)
    with admission:
        with pytest.raises(Late):
            with admission:
                pass
        assert admission.waiting == 0
    with admission:  # the place came back
        pass


def test_the_place_is_given_back_when_the_block_raises():
    admission = Admission(1, 0.05, Late)
    with pytest.raises(ValueError), admission:
        raise ValueError("boom")
    with admission:
        pass


def test_searches_at_once_setting():
    assert load_settings({}).searches_at_once == 0  # 2 per CPU core (crmtasks.pg.db)
    assert load_settings({"CRMTASKS_SEARCHES_AT_ONCE": "3"}).searches_at_once == 3
    for bad, problem in (("-1", "out of range (0 to 500)"), ("501", "out of range (0 to 500)"),
                         ("two", "is not a whole number")):
        with pytest.raises(SettingsError, match=f"^CRMTASKS_SEARCHES_AT_ONCE: .*{re.escape(problem)}"):
            load_settings({"CRMTASKS_SEARCHES_AT_ONCE": bad})
