"""Search admission: real threads and the real server; at most CRMTASKS_SEARCHES_AT_ONCE searches run at once.

The callers beyond wait their turn first come, first served, within
CRMTASKS_DB_POOL_TIMEOUT_S (then PoolExhausted); a search that holds a
connection already (``connection=``, or the thread's own transaction) never
waits for a place. Correctness only: no timing is asserted.
"""

from __future__ import annotations

import contextlib
import threading
import time

import psycopg2
import pytest

from crmtasks.pg import db
from crmtasks.pg.pool import PoolExhausted
from crmtasks.search import faceted_search, query
from tests.integration.pool_support import bound_pool
from tests.integration.test_pool_under_load import SIZE, loaded_crm  # noqa: F401 - the module's fixture


def pool_with_searches(places: int, size: int = 10, timeout_s: float = 30.0):
    """crmtasks bound to a pool of ``size`` that runs ``places`` searches at once; the default pool after."""
    return bound_pool(size, timeout_s=timeout_s, searches_at_once=places)


def _wait_until(predicate, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


@contextlib.contextmanager
def places_held(admission, count: int):
    """``count`` threads each holding a search place until the block ends."""
    release = threading.Event()
    entered = threading.Barrier(count + 1)

    def hold() -> None:
        with admission:
            entered.wait(timeout=20)
            release.wait(timeout=60)

    holders = [threading.Thread(target=hold) for _ in range(count)]
    for holder in holders:
        holder.start()
    entered.wait(timeout=20)
    try:
        yield
    finally:
        release.set()
        for holder in holders:
            holder.join()


def test_sixteen_threads_run_at_most_two_searches_at_once(loaded_crm, monkeypatch):
    running, most, lock = [0], [0], threading.Lock()
    search = query.faceted_search

    def counted(*args, **kwargs):  # the real search, counted while it runs
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.002)  # a search's share of a core: the others arrive meanwhile
            return search(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(query, "faceted_search", counted)
    totals, errors = [], []

    def caller(index: int) -> None:
        try:
            for round_ in range(5):
                status = ("new", "contacted", "qualified")[(index + round_) % 3]
                totals.append(faceted_search("leads", {"status": status}).total)
        except Exception as error:  # noqa: BLE001 - asserted below
            errors.append(error)

    with pool_with_searches(2) as pool:
        threads = [threading.Thread(target=caller, args=(index,)) for index in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(totals) == 16 * 5
        assert most[0] == 2  # bounded, and the places were used
        assert pool.search_admission.waiting == 0
        assert pool.lent == 0


def test_waiting_searches_are_served_first_come_first_served(loaded_crm):
    served: list[int] = []
    with pool_with_searches(1) as pool:
        admission = pool.search_admission
        with places_held(admission, 1):
            callers = []
            for index in range(4):  # each in line before the next asks
                caller = threading.Thread(target=lambda index=index: (faceted_search("leads"), served.append(index)))
                caller.start()
                callers.append(caller)
                _wait_until(lambda index=index: admission.waiting == index + 1)
            assert served == []  # nobody searched while the place was held
        for caller in callers:
            caller.join()
    assert served == [0, 1, 2, 3]


def test_a_search_that_waits_too_long_for_a_place_gets_pool_exhausted(loaded_crm):
    with pool_with_searches(1, timeout_s=0.3) as pool:
        admission = pool.search_admission
        with places_held(admission, 1):
            with pytest.raises(PoolExhausted):
                faceted_search("leads")
            assert admission.waiting == 0  # it left the line
            assert pool.lent == 0  # it never took a connection
        assert faceted_search("leads").total == SIZE.leads  # served again once a place is free


def test_a_search_holding_a_connection_already_does_not_wait_for_a_place(loaded_crm):
    with pool_with_searches(1, timeout_s=0.3) as pool, places_held(pool.search_admission, 1):
        conn = psycopg2.connect(loaded_crm)
        try:
            assert faceted_search("leads", connection=conn).total == SIZE.leads
        finally:
            conn.close()
        with db.borrowed_connection() as bound, bound.atomic():  # the caller's own transaction
            assert faceted_search("leads").total == SIZE.leads
