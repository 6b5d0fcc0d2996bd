"""The PostgreSQL toolkit against the real server: one transaction on either kind of connection, its settings and stamp."""

from __future__ import annotations

import datetime

import psycopg2
import pytest

from crmtasks.pg import AdvisoryLock, load_sql, quietly, transaction


@pytest.fixture(params=[True, False], ids=["autocommit", "ordinary"])
def conn(request, migrated_database_url):
    connection = psycopg2.connect(migrated_database_url)
    connection.autocommit = request.param
    with connection.cursor() as cur:
        cur.execute("CREATE TEMP TABLE toolkit_rows (n int)")
    if not connection.autocommit:
        connection.commit()
    yield connection
    connection.close()


def _count(conn) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM toolkit_rows")
        found = cur.fetchone()[0]
    if not conn.autocommit:
        conn.rollback()
    return found


def test_the_block_commits_when_it_ends_and_rolls_back_when_it_raises(conn):
    with transaction(conn) as cur:
        cur.execute("INSERT INTO toolkit_rows VALUES (1)")
    with pytest.raises(ZeroDivisionError), transaction(conn) as cur:
        cur.execute("INSERT INTO toolkit_rows VALUES (2)")
        raise ZeroDivisionError
    assert _count(conn) == 1
    assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE


def test_local_settings_last_for_the_block_only(conn):
    with transaction(conn, local={"statement_timeout": "1234", "work_mem": "7MB"}) as cur:
        cur.execute("SELECT current_setting('statement_timeout'), current_setting('work_mem')")
        assert cur.fetchone() == ("1234ms", "7MB")
    with conn.cursor() as cur:
        cur.execute("SELECT current_setting('work_mem')")
        assert cur.fetchone()[0] != "7MB"


def test_a_stamped_block_reads_the_snapshot_its_stamp_names(conn, migrated_database_url):
    other = psycopg2.connect(migrated_database_url)
    other.autocommit = True
    try:
        with other.cursor() as writer:
            writer.execute("CREATE TABLE IF NOT EXISTS toolkit_snapshot (n int); TRUNCATE toolkit_snapshot")
        with transaction(conn, repeatable_read=True, read_only=True, stamped=True) as cur:
            stamped_at = cur.fetchone()[0]
            assert isinstance(stamped_at, datetime.datetime)
            with other.cursor() as writer:  # committed after the stamp
                writer.execute("INSERT INTO toolkit_snapshot VALUES (1)")
            # The opening round trip took the snapshot: a commit after the stamp is not in it.
            cur.execute("SELECT count(*) FROM toolkit_snapshot")
            assert cur.fetchone()[0] == 0
        with transaction(conn, repeatable_read=True) as cur:
            cur.execute("SELECT count(*) FROM toolkit_snapshot")
            assert cur.fetchone()[0] == 1
    finally:
        with other.cursor() as writer:
            writer.execute("DROP TABLE IF EXISTS toolkit_snapshot")
        other.close()


def test_a_block_needs_a_connection_with_no_transaction_open(migrated_database_url):
    connection = psycopg2.connect(migrated_database_url)
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")  # an ordinary connection now has a transaction open
        with pytest.raises(RuntimeError, match="no transaction open"), transaction(connection):
            pass
    finally:
        connection.close()


def test_quietly_swallows_the_failure_of_a_clean_up_statement(conn):
    with conn.cursor() as cur:
        quietly(cur, "SELECT no_such_function()")
    if not conn.autocommit:
        conn.rollback()


def test_advisory_lock_keys_are_distinct_bigints():
    keys = [lock.key for lock in AdvisoryLock]
    assert len(set(keys)) == len(keys)
    assert all(isinstance(key, int) and -(2**63) <= key < 2**63 for key in keys)


def test_named_sql_files_load_by_package_and_name():
    assert "INSERT" in load_sql("crmtasks.demo", "leads").upper()
    with pytest.raises(FileNotFoundError):
        load_sql("crmtasks.demo", "no_such_statement")


def test_a_prepared_statements_planner_settings_hold_for_its_execute_only(migrated_database_url):
    from psycopg2 import sql

    from crmtasks.audit.log import _HISTORY
    from crmtasks.pg.prepared import PreparedStatement

    statement = PreparedStatement("toolkit_setting_probe", ("int",), lambda params: sql.SQL(
        "SELECT current_setting('enable_bitmapscan'), {}").format(params[0]), local={"enable_bitmapscan": "off"})
    connection = psycopg2.connect(migrated_database_url)
    try:
        connection.autocommit = True
        with connection.cursor() as cur:
            for number in range(7):  # past the fifth run: the generic plan
                statement.execute(cur, (number,))
                assert cur.fetchall() == [("off", number)]
                cur.execute("SHOW enable_bitmapscan")
                assert cur.fetchone()[0] == "on"  # never left in the session
        connection.autocommit = False
        with connection.cursor() as cur:  # in the caller's transaction, whose settings are its own
            statement.execute(cur, (1,))
            assert cur.fetchall() == [("on", 1)]
            cur.execute("SHOW enable_bitmapscan")
            assert cur.fetchone()[0] == "on"
        connection.rollback()
    finally:
        connection.close()
    for (since, until), prepared in _HISTORY.items():
        assert prepared._execute_alone.startswith("SET LOCAL enable_bitmapscan = 'off'; ")
        assert "SET LOCAL plan_cache_mode = 'force_generic_plan'; " in prepared._execute_alone  # bounded or not
    with pytest.raises(ValueError):
        PreparedStatement("toolkit_bad_setting", (), lambda params: sql.SQL("SELECT 1"), local={"work_mem": "1'; --"})
