"""Short calls served together (crmtasks.pg.combining): exact, bounded, leak-free, with real threads and PostgreSQL.

On the hand-made organization of test_sharing_model, with a pool whose few
places make callers wait in line, so most calls are answered by another
thread's statement. Correctness only: no timing is asserted (the bench
measures the speed).
"""

from __future__ import annotations

import threading
import time

import psycopg2
import pytest

from crmtasks import reports, sharing
from crmtasks.pg.pool import PoolExhausted
from crmtasks.reports.refresh import refresh
from crmtasks.settings import get_settings
from tests.integration import test_sharing_model as hand_made
from tests.integration.test_sharing_hot_path import pool_of
from tests.integration.test_sharing_model import AGENT, MGR_EAST, MGR_WEST, REP_EAST, SUPPORT

organization = hand_made.organization  # the fixture writing the hand-made organization

_GRANT = ("INSERT INTO sharing_rules (name, entity, kind, owner_role_id, grantee_role_id, "
          "grantee_include_subordinates, access) VALUES ('combined', 'leads', 'owner', 5, 7, true, 'read')")
_REVOKE = "DELETE FROM sharing_rules WHERE name = 'combined'"
# (user, lead) -> its answer in a state (lead 1 owned by Rep East?, the 'combined' rule present?)
_CHECKS = {
    (MGR_EAST, 1): lambda east, _: east,        # the owner's manager, while Rep East owns it
    (MGR_WEST, 1): lambda east, _: not east,    # the owner, once it is reassigned to Manager West
    (AGENT, 3): lambda _, granted: granted,     # the rule's grant (an epoch bump)
    (SUPPORT, 3): lambda _east, _granted: True,  # rule 1, never changed
}


def _change(conn, step: int, state: list[bool]) -> None:
    """Step ``step``: even steps reassign lead 1, odd ones grant or revoke the rule; committed when it returns."""
    with conn.cursor() as cur:
        if step % 2 == 0:
            state[0] = not state[0]
            cur.execute("UPDATE leads SET owner_id = %s WHERE id = 1", (REP_EAST if state[0] else MGR_WEST,))
        else:
            state[1] = not state[1]
            cur.execute(_GRANT if state[1] else _REVOKE)


def _run_threads(count: int, target, timeout_s: float = 120.0) -> None:
    """``target(index)`` in ``count`` threads at once; fails on any error raised in one, or one still running."""
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            target(index)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    threads = [threading.Thread(target=run, args=(index,), daemon=True) for index in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "a caller never got its answer (a lost wake-up)"
    assert not errors, f"{len(errors)} callers failed, the first with {errors[0]!r}"


def test_combined_checks_answer_as_alone_under_concurrent_revokes_and_grants(organization, migrated_database_url):
    """Every check that starts after a change committed, and ends before the next one begins, sees that change."""
    checker = sharing.make_checker(get_settings(), consistency="exact")
    pairs = list(_CHECKS)
    changes: list[tuple[float, float, tuple[bool, bool]]] = []  # (began, committed, state after)
    seen: list[list[tuple[float, float, tuple[int, int], bool]]] = [[] for _ in range(24)]
    stop = threading.Event()
    writer = psycopg2.connect(migrated_database_url)
    writer.autocommit = True

    def mutate() -> None:
        state = [True, False]
        try:
            for step in range(120):
                began = time.perf_counter()
                _change(writer, step, state)
                changes.append((began, time.perf_counter(), tuple(state)))
                time.sleep(0.015)  # checks that start and end between two changes
        finally:
            stop.set()

    def check(index: int) -> None:
        i = index
        while not stop.is_set():
            user, lead = pairs[i % len(pairs)]
            began = time.perf_counter()
            allowed = checker.can_access(user, "leads", lead)
            seen[index].append((began, time.perf_counter(), (user, lead), allowed))
            i += 1

    with pool_of(6, checks_at_once=2) as pool:
        mutator = threading.Thread(target=mutate, daemon=True)
        mutator.start()
        try:
            _run_threads(24, check)
        finally:
            mutator.join(60)
            writer.close()
        combined = pool.combiner("sharing checks").counts["combined"]
        assert pool.lent == 0

    checked = wrong = 0
    for began, ended, pair, allowed in (call for calls in seen for call in calls):
        # the state of the last change committed before the check began, if the next did not begin before it ended
        before = [index for index, (_, committed, _) in enumerate(changes) if committed <= began]
        state = changes[before[-1]][2] if before else (True, False)
        following = (before[-1] + 1) if before else 0
        if following < len(changes) and changes[following][0] < ended:
            continue  # a change ran during the check: either answer is right
        checked += 1
        wrong += allowed is not _CHECKS[pair](*state)
    assert combined > 100, "the checks were not served together: nothing was tested"
    assert checked > 1000
    assert wrong == 0, f"{wrong} of {checked} checks answered a state other than the one committed before them"


def _wait_until(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.mark.parametrize("kind", ["sharing checks", "reports"])
def test_a_caller_waiting_in_line_gets_pool_exhausted_in_time(organization, migrated_database_url, kind):
    """The one place's holder is stuck in its statement (a lock): the callers in line give up after their wait."""
    call = (lambda: sharing.can_access(SUPPORT, "leads", 3)) if kind == "sharing checks" else reports.pipeline
    locker = psycopg2.connect(migrated_database_url)
    try:
        with pool_of(4, checks_at_once=1, timeout_s=0.3) as pool:
            line = pool.combiner(kind)
            with locker.cursor() as cur:
                cur.execute("LOCK TABLE leads, report_aggregate_state IN ACCESS EXCLUSIVE MODE")
            held: list[object] = []
            holder = threading.Thread(target=lambda: held.append(call()), daemon=True)
            holder.start()
            _wait_until(lambda: line._busy == 1)
            outcomes: list[object] = [None] * 6

            def wait_in_line(index: int) -> None:
                began = time.monotonic()
                try:
                    call()
                except PoolExhausted as error:
                    outcomes[index] = (str(error), time.monotonic() - began)

            try:
                _run_threads(6, wait_in_line, timeout_s=5)
            finally:
                locker.rollback()
                holder.join(30)
            assert held and held[0]  # the holder's own call, answered once the lock was gone
            for outcome in outcomes:
                assert outcome is not None, "a caller in line was served only after the holder's statement"
                message, waited = outcome
                assert "pool of 4 within 0.3 s" in message
                assert waited < 2
            assert line.waiting == 0 and line._busy == 0
            assert pool.lent == 0
            assert call()  # served again
    finally:
        locker.close()


def test_calls_that_raise_together_give_every_connection_back(organization):
    """A report with no rows raises in each caller (each runs its own call to say why); nothing stays lent."""
    failures: list[int] = []
    with pool_of(4, checks_at_once=2) as pool:
        def call(index: int) -> None:
            for _ in range(20):
                try:
                    reports.pipeline(owner=999_999)
                except reports.ReportError as error:
                    assert "no user has id 999999" in str(error)
                    failures.append(index)

        _run_threads(16, call)
        counts = pool.combiner("reports").counts
        assert len(failures) == 16 * 20
        assert counts["batches"] > 0  # some were read together, then each raised on its own
        assert pool.lent == 0 and pool.idle <= 4


def test_forty_threads_of_many_calls_all_finish(organization):
    """No lost wake-up: 40 threads x 150 calls through a line of two places, mixed kinds, all answered."""
    done = [0] * 40
    expected = {(SUPPORT, 3): True, (MGR_EAST, 1): True, (AGENT, 3): False}
    wrong: list[tuple] = []
    with pool_of(20, checks_at_once=2) as pool:
        rows = reports.pipeline().rows.as_list()
        assert rows

        def call(index: int) -> None:
            for i in range(150):
                if (index + i) % 5 == 0:
                    if reports.pipeline().rows != rows:
                        wrong.append("pipeline")
                else:
                    pair = list(expected)[(index + i) % len(expected)]
                    if sharing.can_access(pair[0], "leads", pair[1]) is not expected[pair]:
                        wrong.append(pair)
                done[index] += 1

        _run_threads(40, call)
        checks, report_calls = pool.combiner("sharing checks"), pool.combiner("reports")
        assert done == [150] * 40
        assert wrong == []
        assert checks.counts["combined"] > 0 and report_calls.counts["combined"] > 0
        assert checks.waiting == report_calls.waiting == 0
        assert pool.lent == 0


@pytest.fixture(autouse=True)
def _aggregates_then_nothing_left(organization, migrated_database_url):
    """The organization's report aggregates published; afterwards, no rule of ours and no aggregates left."""
    conn = psycopg2.connect(migrated_database_url)
    conn.autocommit = True
    try:
        refresh(conn, full=True)
        yield
        with conn.cursor() as cur:
            cur.execute(_REVOKE)
            cur.execute("TRUNCATE report_deal_periods, report_open_pipeline, report_lead_periods, "
                        "report_account_segments, report_deal_changes, report_lead_changes, report_account_changes, "
                        "report_owner_changes, report_payloads")
            cur.execute("UPDATE report_aggregate_state SET as_of = NULL, rebuild_required = true, "
                        "last_rebuild_at = NULL")
    finally:
        conn.close()


def test_without_visibilities_in_memory_checks_are_not_combined(organization):
    """Only the memory tier decides a check from rows read for others; without it each check runs alone."""
    checker = sharing.make_checker(get_settings(), local=False, consistency="exact")
    wrong: list[int] = []
    with pool_of(6, checks_at_once=2) as pool:
        def call(index: int) -> None:
            for _ in range(20):
                if checker.can_access(SUPPORT, "leads", 3) is not True:
                    wrong.append(index)

        _run_threads(12, call)
        assert wrong == []
        assert pool.combiner("sharing checks").counts["batches"] == 0
        assert pool.lent == 0
