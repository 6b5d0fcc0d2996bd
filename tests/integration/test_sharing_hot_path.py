"""The warm exact check's path: a connection lent for the call only, prepared statements, covering indexes.

On the hand-made organization of test_sharing_model. Correctness only: no
timing is asserted (the bench measures the speed).
"""

from __future__ import annotations

import threading

import psycopg2
import pytest
from psycopg2 import sql

from crmtasks import sharing
from crmtasks.pg import db
from crmtasks.pg.pool import PoolExhausted
from crmtasks.settings import get_settings
from crmtasks.sharing.entities import ENTITIES
from crmtasks.sharing.records import _record_query
from tests.integration import test_sharing_model as hand_made
from tests.integration.pool_support import bound_pool
from tests.integration.test_sharing_model import CEO, LEADS, SUPPORT

organization = hand_made.organization  # the fixture writing the hand-made organization


def pool_of(size: int, *, checks_at_once: int = 0, timeout_s: float = 30.0):
    """crmtasks bound to a pool of ``size`` connections, this thread holding none; the default pool after."""
    return bound_pool(size, timeout_s=timeout_s, sharing_checks_at_once=checks_at_once)


def _answers(checker) -> list[bool]:
    return [checker.can_access(user, "leads", lead) for user in (CEO, SUPPORT) for lead in LEADS]


def _terminate(url: str, backend: int) -> None:
    killer = psycopg2.connect(url)
    killer.autocommit = True
    try:
        with killer.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (backend,))
            for _ in range(100):  # the backend exits a moment after the signal
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (backend,))
                if cur.fetchone()[0] == 0:
                    return
                threading.Event().wait(0.05)
    finally:
        killer.close()


def _prepared(conn) -> set[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT name FROM pg_prepared_statements")
        return {row[0] for row in cur.fetchall()}


def test_a_check_lends_a_connection_without_peewees_thread_state_and_gives_it_back(organization):
    with pool_of(2) as pool:
        with db.lent_connection() as conn:
            assert pool.lent == 1
            assert db.database.is_closed()  # nothing entered in peewee's per-thread state
            backend = conn.get_backend_pid()
        assert (pool.lent, pool.idle) == (0, 1)
        with pytest.raises(ZeroDivisionError), db.lent_connection() as conn:
            conn.cursor().execute("BEGIN; SELECT 1")
            1 / 0  # noqa: B018 - a call that raises inside a transaction
        assert (pool.lent, pool.idle) == (0, 1)
        with db.lent_connection() as conn:  # the same connection, rolled back, went back to the pool
            assert conn.get_backend_pid() == backend
            assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE


def test_a_thread_with_its_own_connection_checks_on_it(organization):
    with pool_of(2) as pool:
        with db.borrowed_connection() as database:
            mine = database.connection()
            with db.lent_connection() as conn:
                assert conn is mine
            assert sharing.can_access(CEO, "leads", 1) is True
            assert pool.lent == 1


def test_prepared_statements_come_back_after_the_session_is_terminated(organization, migrated_database_url):
    checker = sharing.make_checker(get_settings(), consistency="exact")
    with pool_of(1):
        expected = _answers(checker)
        checker.can_access_many(CEO, "leads", list(LEADS))
        with db.lent_connection() as conn:
            backend = conn.get_backend_pid()
            assert {"crmtasks_sharing_record_leads", "crmtasks_sharing_records_leads"} <= _prepared(conn)
        _terminate(migrated_database_url, backend)
        assert _answers(checker) == expected
        assert checker.can_access_many(CEO, "leads", list(LEADS)) == {i for i, ok in zip(LEADS, expected) if ok}
        with db.lent_connection() as conn:
            assert conn.get_backend_pid() != backend
            assert {"crmtasks_sharing_record_leads", "crmtasks_sharing_records_leads"} <= _prepared(conn)


def test_statements_lost_by_discard_all_are_prepared_again(organization):
    checker = sharing.make_checker(get_settings(), consistency="exact")
    with pool_of(1):
        expected = _answers(checker)
        with db.lent_connection() as conn, conn.cursor() as cur:
            cur.execute("DISCARD ALL")  # what a connection pooler in front of PostgreSQL may do between clients
            assert _prepared(conn) == set()
        assert _answers(checker) == expected
        with db.lent_connection() as conn:
            assert "crmtasks_sharing_record_leads" in _prepared(conn)


def test_inside_a_callers_transaction_nothing_is_prepared_and_the_answer_is_the_same(organization,
                                                                                     migrated_database_url):
    conn = psycopg2.connect(migrated_database_url)  # not autocommit: every statement is in the caller's transaction
    try:
        checker = sharing.make_checker(get_settings(), consistency="exact")
        expected = [checker.can_access(CEO, "leads", lead) for lead in LEADS]
        assert True in expected and False in expected
        assert [checker.can_access(CEO, "leads", lead, connection=conn) for lead in LEADS] == expected
        assert _prepared(conn) == set()
        assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INTRANS  # still the caller's
    finally:
        conn.close()


@pytest.mark.parametrize("batch", [False, True], ids=["one id", "a page"])
@pytest.mark.parametrize("entity", ["leads", "deals", "accounts", "contacts"])
def test_the_record_statements_are_answered_from_the_covering_indexes(organization, crm_db, entity, batch):
    """Migration 0016's indexes carry every column a check reads: no visit to the table.

    The hand-made tables are tiny, so the planner would rather scan them:
    with sequential and bitmap scans off, what is left shows whether an
    index covers the statement (without 0016 it is an Index Scan of the key).
    """
    kind = "bigint[]" if batch else "bigint"
    statement = _record_query(ENTITIES[entity], batch, sql.SQL("{}::{}").format(sql.Placeholder(), sql.SQL(kind)))
    value = [1, 2, 3] if batch else 1
    with crm_db.atomic(), crm_db.connection().cursor() as cur:
        cur.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
        cur.execute(sql.SQL("EXPLAIN {}").format(statement), (value,))
        plan = "\n".join(row[0] for row in cur.fetchall())
    assert f"Index Only Scan using {entity}_sharing_check_idx on {entity} record" in plan, plan
    if entity in ("deals", "contacts"):
        assert "Index Only Scan using accounts_sharing_check_idx on accounts account" in plan, plan


def test_checks_beyond_the_limit_wait_their_turn_though_connections_are_free(organization):
    with pool_of(5, checks_at_once=2, timeout_s=0.2) as pool:
        first, second = pool.lend(), pool.lend()
        assert pool.lent == 2
        with pytest.raises(PoolExhausted):  # two checks at once: a third waits, then gives up
            pool.lend()
        assert (pool.waiting, pool.lent) == (0, 2)
        got = []
        waiter = threading.Thread(target=lambda: got.append(pool.lend()))
        pool.pool_timeout_s = 30.0
        waiter.start()
        for _ in range(10_000):
            if pool.waiting:
                break
            threading.Event().wait(0.001)
        assert pool.waiting == 1
        assert pool.lent == 2  # waiting for a check's turn, not for a connection
        pool.give_back(first)
        waiter.join()
        assert got == [first]  # the turn came with the connection just given back
        with db.borrowed_connection():  # a call that is not a check is not held back
            assert pool.lent == 3
        pool.give_back(second)
        pool.give_back(got[0])
        assert (pool.lent, pool.waiting) == (0, 0)


@pytest.mark.parametrize("args,message", [
    ((1, ["leads"], 1), "unknown entity"), ((1, "leads", 1, ["read"]), "unknown access level"),
    ((1, "lead", 1), "unknown entity 'lead'"), ((True, "leads", 1), "user_id must be an int"),
    ((1, "leads", 1.0), "record_id must be an int"),
])
def test_bad_checks_are_still_refused_with_one_clear_value_error(args, message):
    """The warm path validates with one set lookup; whatever it cannot look up still gets the ValueError."""
    with pytest.raises(ValueError, match=message):
        sharing.can_access(*args)
