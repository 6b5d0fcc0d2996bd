"""Combiner (crmtasks.pg.combining): requests served together are read after they arrived; leftovers run alone.

Real threads; the served "statements" are numbered, so a test can tell which
one answered a request and when it was sent.
"""

from __future__ import annotations

import threading
import time

import pytest

from crmtasks.pg.combining import ALONE, Combiner


def _wait_until(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


class Statements:
    """Numbered statements: ``run_one`` and ``run_many`` answer each request with the number of the statement."""

    def __init__(self, pause_s: float = 0.0005) -> None:
        self.sent = 0
        self.lock = threading.Lock()
        self.pause_s = pause_s
        self.sizes: list[int] = []

    def _send(self) -> int:
        with self.lock:
            self.sent += 1
            number = self.sent
        time.sleep(self.pause_s)  # the round trip, off the GIL: others arrive meanwhile
        return number

    def run_one(self, _request) -> int:
        return self._send()

    def run_many(self, _key, requests: list) -> list[int]:
        number = self._send()
        self.sizes.append(len(requests))
        return [number] * len(requests)


def _threads(count: int, target) -> None:
    threads = [threading.Thread(target=target, args=(index,), daemon=True) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a caller never got its answer"


def test_every_answer_comes_from_a_statement_sent_after_the_request_arrived():
    combiner = Combiner(2, 10.0, lambda: TimeoutError("waited"))
    statements = Statements()
    late: list[tuple[int, int]] = []

    def call(index: int) -> None:
        for _ in range(200):
            arrived = statements.sent  # every statement numbered up to here was sent before this request existed
            answer = combiner.call("k", index, statements.run_one, statements.run_many)
            if answer <= arrived:
                late.append((arrived, answer))

    _threads(16, call)
    assert combiner.counts["combined"] > 0 and max(statements.sizes) > 2  # requests were served together
    assert late == []
    assert combiner.waiting == 0


def test_only_requests_of_one_key_are_served_together():
    combiner = Combiner(1, 10.0, lambda: TimeoutError("waited"))
    mixed: list[list] = []

    def run_many(key, requests: list) -> list:
        time.sleep(0.0005)
        if any(request[0] != key for request in requests):
            mixed.append(requests)
        return [request[0] for request in requests]

    def call(index: int) -> None:
        key = index % 3
        for _ in range(100):
            assert combiner.call(key, (key, index), lambda request: (time.sleep(0.0005), request[0])[1], run_many) == key

    _threads(12, call)
    assert combiner.counts["batches"] > 0
    assert mixed == []


def test_a_request_left_alone_runs_in_its_own_callers_thread_and_raises_there():
    combiner = Combiner(1, 10.0, lambda: TimeoutError("waited"))
    gate = threading.Event()
    ran_in: dict[int, int] = {}
    raised: dict[int, str] = {}

    def run_one(request: int) -> int:
        if request == 0:
            gate.wait(10)  # the first caller holds the place while the others queue
        ran_in[request] = threading.get_ident()
        if request % 2:
            raise ValueError(f"request {request}")
        return request

    def run_many(_key, requests: list) -> list:
        return [ALONE if request % 2 else request for request in requests]

    idents: dict[int, int] = {}

    def call(index: int) -> None:
        idents[index] = threading.get_ident()
        try:
            assert combiner.call("k", index, run_one, run_many) == index
        except ValueError as error:
            raised[index] = str(error)

    first = threading.Thread(target=call, args=(0,), daemon=True)
    first.start()
    time.sleep(0.05)
    others = [threading.Thread(target=call, args=(index,), daemon=True) for index in range(1, 7)]
    for other in others:
        other.start()
    deadline = time.monotonic() + 10
    while combiner.waiting < 6:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    gate.set()
    for thread in [first, *others]:
        thread.join(10)
    assert raised == {index: f"request {index}" for index in (1, 3, 5)}
    assert all(ran_in[index] == idents[index] for index in (1, 3, 5))  # each in its caller's thread


def test_a_caller_in_line_gives_up_after_its_wait():
    combiner = Combiner(1, 0.1, lambda: TimeoutError("waited"))
    gate = threading.Event()
    holder = threading.Thread(target=combiner.call, args=("k", 0, lambda _: gate.wait(10), None), daemon=True)
    holder.start()
    time.sleep(0.05)
    began = time.monotonic()
    with pytest.raises(TimeoutError, match="waited"):
        combiner.call("k", 1, lambda _: 1, lambda _key, requests: [1] * len(requests))
    assert time.monotonic() - began < 2
    assert combiner.waiting == 0
    gate.set()
    holder.join(10)
    assert combiner.call("k", 2, lambda _: 2, None) == 2  # the place came back


def test_a_batch_wakes_its_callers_one_after_another_in_the_order_they_came():
    combiner = Combiner(1, 10, TimeoutError)
    statements = Statements()
    held, release = threading.Event(), threading.Event()
    returned: list[int] = []

    def hold_the_place(request):
        held.set()
        release.wait(10)
        return statements.run_one(request)

    holder = threading.Thread(target=combiner.call, args=("k", -1, hold_the_place, statements.run_many))
    holder.start()
    held.wait(10)
    callers = []
    for index in range(24):  # each in line before the next one asks
        caller = threading.Thread(target=lambda index=index: (
            combiner.call("k", index, statements.run_one, statements.run_many), returned.append(index)))
        caller.start()
        callers.append(caller)
        _wait_until(lambda index=index: combiner.waiting == index + 1)
    release.set()
    holder.join()
    for caller in callers:
        caller.join()
    # The first in line serves the 23 behind it in one statement; they are woken in the order they came.
    assert statements.sizes == [24]
    assert returned[1:] == list(range(1, 24))
