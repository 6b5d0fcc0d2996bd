"""Turns: the gate of crmtasks.pg.pool serves waiting callers first come, first served, and gives up in time.

A place comes with the item given back with it (an idle connection): handed
straight to the longest waiter, else kept, the most recent first.
"""

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
    assert turns.acquire(1)[0]
    served: list[str] = []

    def wait_turn(name: str) -> None:
        assert turns.acquire(10)[0]
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
    assert turns.acquire(10)[0]
    served.append("releaser")
    turns.release()
    first.join()
    second.join()
    assert served == ["first", "second", "releaser"]


def test_a_waiter_gives_up_after_its_timeout_and_leaves_the_line():
    turns = Turns(1)
    assert turns.acquire(1) == (True, None)
    assert turns.acquire(0.05) == (False, None)
    assert turns.waiting == 0
    turns.release("idle")
    assert turns.acquire(0.05) == (True, "idle")


def test_places_are_counted():
    turns = Turns(3)
    assert all(turns.acquire(0.01)[0] for _ in range(3))
    assert turns.acquire(0.01)[0] is False
    turns.release()
    assert turns.acquire(0.01)[0]


def test_a_waiter_is_handed_the_item_given_back_with_the_place():
    turns = Turns(1)
    assert turns.acquire(1) == (True, None)
    got = []
    waiter = threading.Thread(target=lambda: got.append(turns.acquire(10)))
    waiter.start()
    _wait_until(lambda: turns.waiting == 1)
    turns.release("connection 1")
    waiter.join()
    assert got == [(True, "connection 1")]
    assert turns.kept == 0  # handed over, never kept where another thread could take it


def test_kept_items_go_out_most_recent_first_and_drain_leaves_the_places_free():
    turns = Turns(3)
    for _ in range(3):
        assert turns.acquire(0.01)[0]
    for item in ("a", "b", "c"):
        turns.release(item)
    assert turns.kept == 3
    assert [turns.acquire(0.01)[1] for _ in range(2)] == ["c", "b"]
    assert turns.drain() == ["a"] and turns.kept == 0
    assert turns.acquire(0.01) == (True, None)  # the third place, free, with nothing kept
    assert turns.acquire(0.01) == (False, None)


def test_a_place_given_back_with_nothing_reaches_the_waiter_as_nothing():
    turns = Turns(1)
    turns.acquire(1)
    got = []
    waiter = threading.Thread(target=lambda: got.append(turns.acquire(10)))
    waiter.start()
    _wait_until(lambda: turns.waiting == 1)
    turns.release(None)  # the holder's connection broke: the waiter opens a new one
    waiter.join()
    assert got == [(True, None)]


def test_pool_exhausted_names_the_pool_and_the_wait_in_one_line():
    message = str(PoolExhausted(20, 2.5))
    assert "pool of 20 within 2.5 s" in message
    assert "CRMTASKS_DB_POOL_SIZE" in message and "CRMTASKS_DB_POOL_TIMEOUT_S" in message
    assert "\n" not in message
