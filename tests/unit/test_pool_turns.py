"""Turns: the gate of crmtasks.pg.pool serves waiting callers first come, first served, and gives up in time."""

from __future__ import annotations

import threading
import time

from crmtasks.pg.pool import PoolExhausted, Turns


def _wait_until(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_a_released_place_goes_to_the_longest_waiter_not_to_the_releaser():
    turns = Turns(1)
    assert turns.acquire(1)
    served: list[str] = []

    def wait_turn(name: str) -> None:
        assert turns.acquire(10)
        served.append(name)
        turns.release()

    first = threading.Thread(target=wait_turn, args=("first",))
    first.start()
    _wait_until(lambda: turns.waiting == 1)
    second = threading.Thread(target=wait_turn, args=("second",))
    second.start()
    _wait_until(lambda: turns.waiting == 2)
    turns.release()
    # The releaser asks again at once: it queues behind both waiters instead of taking the place back.
    assert turns.acquire(10)
    served.append("releaser")
    turns.release()
    first.join()
    second.join()
    assert served == ["first", "second", "releaser"]


def test_a_waiter_gives_up_after_its_timeout_and_leaves_the_line():
    turns = Turns(1)
    assert turns.acquire(1)
    assert turns.acquire(0.05) is False
    assert turns.waiting == 0
    turns.release()
    assert turns.acquire(0.05)


def test_places_are_counted():
    turns = Turns(3)
    assert all(turns.acquire(0.01) for _ in range(3))
    assert turns.acquire(0.01) is False
    turns.release()
    assert turns.acquire(0.01)


def test_pool_exhausted_names_the_pool_and_the_wait_in_one_line():
    message = str(PoolExhausted(20, 2.5))
    assert "pool of 20 within 2.5 s" in message
    assert "CRMTASKS_DB_POOL_SIZE" in message and "CRMTASKS_DB_POOL_TIMEOUT_S" in message
    assert "\n" not in message
