"""The public API under more callers than pooled connections: real threads, real processes, the real server.

Each call borrows a connection and gives it back when it ends (also when it
raises); callers beyond the pool wait their turn; a caller that waits too
long gets PoolExhausted. Correctness only: no timing is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import psycopg2
import pytest
from playhouse.pool import MaxConnectionsExceeded

from crmtasks import audit, reports, sharing
from crmtasks.demo import DemoSize, seed_demo
from crmtasks.pg import db
from crmtasks.pg.pool import PoolExhausted
from crmtasks.reports.refresh import refresh
from crmtasks.search import faceted_search
from crmtasks.search.precompute import precompute
from tests.integration.pool_load_process import hammer, workload
from tests.integration.pool_support import bound_pool

ROOT = Path(__file__).resolve().parents[2]
SIZE = DemoSize(users=20, accounts=100, contacts=100, leads=1_000, deals=300)


# What the module leaves behind is emptied, so later tests find no published counts, aggregates or audit rows.
_LEFT_BEHIND = ("roles, users, accounts, contacts, leads, deals, task_runs, search_changes, search_index_current, "
                "search_index_parts, search_index_generations, report_deal_periods, report_open_pipeline, report_lead_periods, "
                "report_account_segments, report_deal_changes, report_lead_changes, report_account_changes, "
                "report_owner_changes, audit_log")


@pytest.fixture(scope="module")
def loaded_crm(migrated_database_url):
    """A small demo CRM with published facet counts and report aggregates; yields the database URL."""
    conn = psycopg2.connect(migrated_database_url)
    try:
        seed_demo(conn, SIZE, 7, replace=True)
        conn.autocommit = True
        precompute(conn)
        refresh(conn, full=True)
        yield migrated_database_url
        with conn.cursor() as cur:
            cur.execute(f"TRUNCATE {_LEFT_BEHIND} RESTART IDENTITY CASCADE")
            cur.execute("UPDATE report_aggregate_state SET as_of = NULL, rebuild_required = true, last_rebuild_at = NULL")
    finally:
        conn.close()


def pool_of(size: int, timeout_s: float = 30.0):
    """crmtasks bound to a pool of ``size`` connections and a ``timeout_s`` wait; the default pool after."""
    return bound_pool(size, timeout_s=timeout_s)


def test_forty_threads_share_a_pool_of_five(loaded_crm):
    with pool_of(5) as pool:
        result = hammer(workload(loaded_crm), threads=40, rounds=3)
        assert result["errors"] == []
        assert result["calls"] == 40 * 3 * 6
        assert pool.lent == 0  # every call gave its connection back
        assert pool.idle <= 5


def test_four_processes_of_twelve_threads_with_pools_of_three(loaded_crm):
    env = {**os.environ, "CRMTASKS_DB_POOL_SIZE": "3",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    children = [subprocess.Popen([sys.executable, "-m", "tests.integration.pool_load_process", "12", "2"], cwd=ROOT,
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(4)]
    outputs = [child.communicate(timeout=300) for child in children]
    for child, (stdout, stderr) in zip(children, outputs):
        assert child.returncode == 0, stderr[-3000:]
        result = json.loads(stdout.strip().splitlines()[-1])
        assert result["errors"] == []
        assert result["calls"] == 12 * 2 * 6
        assert result["lent"] == 0 and result["opened"] <= 3


def test_a_caller_that_waits_too_long_gets_pool_exhausted(loaded_crm):
    with pool_of(2, timeout_s=0.3) as pool:
        holding, done = threading.Barrier(3), threading.Event()

        def hold_one():
            with db.borrowed_connection():
                holding.wait()
                done.wait(30)

        holders = [threading.Thread(target=hold_one) for _ in range(2)]
        for holder in holders:
            holder.start()
        holding.wait()
        try:
            assert pool.lent == 2
            for call in (lambda: faceted_search("leads"), lambda: reports.pipeline(),
                         lambda: sharing.can_access(1, "leads", 1), lambda: audit.history("lead", 1)):
                with pytest.raises(PoolExhausted) as caught:
                    call()
                assert not isinstance(caught.value, MaxConnectionsExceeded)
                assert "pool of 2 within 0.3 s" in str(caught.value)
                assert "\n" not in str(caught.value)
        finally:
            done.set()
            for holder in holders:
                holder.join()
        assert pool.lent == 0
        assert faceted_search("leads").total == SIZE.leads  # served again once a connection is free


def test_a_call_that_raises_gives_its_connection_back(loaded_crm):
    with pool_of(3) as pool:
        with pytest.raises(reports.ReportError, match="no user has id 999999"):
            reports.pipeline(owner=999_999)  # raised after its statements ran
        assert pool.lent == 0 and pool.idle == 1
        assert db.database.is_closed()  # this thread keeps nothing

        failures = []

        def raising_caller():
            for _ in range(5):
                try:
                    reports.pipeline(owner=999_999)
                except reports.ReportError:
                    failures.append(1)

        callers = [threading.Thread(target=raising_caller) for _ in range(12)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
        assert len(failures) == 60  # each one a ReportError: none waited out the pool
        assert pool.lent == 0


def test_a_block_that_raises_rolls_back_and_gives_the_connection_back(loaded_crm):
    with pool_of(1) as pool:
        with pytest.raises(RuntimeError), db.borrowed_connection() as database:
            database.execute_sql("BEGIN")
            database.execute_sql("INSERT INTO roles (name) VALUES ('left open')")
            raise RuntimeError("the caller's code failed")
        assert pool.lent == 0
        with db.borrowed_connection() as database:  # the same (only) connection, clean
            assert database.connection().get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
            assert database.execute_sql("SELECT count(*) FROM roles WHERE name = 'left open'").fetchone()[0] == 0


def test_a_callers_own_transaction_keeps_its_connection(loaded_crm):
    with pool_of(2) as pool, db.borrowed_connection() as database:
        lead = faceted_search("leads", per_page=1).records[0]["id"]
        with database.atomic() as transaction:
            row_id = audit.record("update", "lead", lead, changes={"status": ["new", "working"]})
            assert faceted_search("leads").total == SIZE.leads
            assert sharing.can_access(1, "leads", lead) in (True, False)
            assert not database.is_closed() and pool.lent == 1  # the calls used this thread's connection
            transaction.rollback()  # the audit row was written in the caller's transaction
        assert [entry.id for entry in audit.history("lead", lead)].count(row_id) == 0
        assert pool.lent == 1


def test_a_connection_the_server_ended_is_replaced(loaded_crm):
    with pool_of(1) as pool:
        with db.borrowed_connection() as database:
            backend = database.connection().get_backend_pid()
        killer = psycopg2.connect(loaded_crm)
        killer.autocommit = True
        with killer.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (backend,))
            for _ in range(100):  # the backend exits a moment after the signal
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (backend,))
                if cur.fetchone()[0] == 0:
                    break
                threading.Event().wait(0.05)
        killer.close()
        assert sharing.can_access(1, "leads", 1) in (True, False)
        with db.borrowed_connection() as database:
            assert database.connection().get_backend_pid() != backend
        assert pool.lent == 0
