"""The demo CRM loaded by several sessions at once (``seed_demo_parallel``, what scripts/bench seeds).

It must give exactly the rows of the one-transaction ``seed_demo`` (the
benchmark measures the CRM ``crmtasks seed`` makes), each table's rows on
disk in the same order as that seed leaves them (one INSERT per table, never
split between sessions), and the schema
back as the migrations made it, every foreign key validated.
"""

from __future__ import annotations

import dataclasses

import psycopg2
import pytest
from psycopg2 import sql

from crmtasks.demo import CRM_TABLES, CrmNotEmpty, DemoSize, seed_demo, seed_demo_parallel
from crmtasks.pg import migrate
from tests.integration.test_seed import SEED, SIZE, TODAY, connect, fingerprint, rows, scalar, schema_snapshot


def layout(conn) -> dict[str, str]:
    """Per record table, an md5 of its ids in the order its rows lie on disk."""
    return {table: scalar(conn, sql.SQL("SELECT md5(string_agg(id::text, ',' ORDER BY ctid)) FROM {}").format(
        sql.Identifier(table))) for table in ("accounts", "contacts", "leads", "deals")}


def _migrated(url: str) -> dict:
    conn = migrate.connect(url)
    try:
        migrate.migrate(conn)
    finally:
        conn.close()
    with connect(url) as conn:
        snapshot = schema_snapshot(conn)
    conn.close()
    return snapshot


@pytest.fixture(scope="module")
def one_transaction(tmp_path_factory, server_database_url):
    """The fingerprint and disk layout of SIZE seeded by seed_demo, in a database of its own (dropped after)."""
    from tests.conftest import RUN_ID, with_database

    name = f"crmtasks_test_{RUN_ID}_seed1"
    admin = psycopg2.connect(server_database_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(server_database_url, name)
    try:
        _migrated(url)
        conn = connect(url)
        seed_demo(conn, SIZE, SEED, today=TODAY)
        yield {"rows": fingerprint(conn), "layout": layout(conn)}
        conn.close()
    finally:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


@pytest.mark.parametrize("sessions", [2, 1])
def test_the_same_rows_as_the_one_transaction_seed(one_transaction, fresh_database, sessions):
    _migrated(fresh_database)
    load = seed_demo_parallel(fresh_database, SIZE, SEED, sessions=sessions, today=TODAY)
    with connect(fresh_database) as conn:
        assert fingerprint(conn) == one_transaction["rows"]
        # on disk in the order crmtasks seed leaves them (one INSERT per table, never split between sessions)
        assert layout(conn) == one_transaction["layout"]
    conn.close()
    assert {table: load.rows[table] for table in ("users", "accounts", "contacts", "leads", "deals")} == \
        dataclasses.asdict(SIZE)
    assert list(load.rows) == list(CRM_TABLES)
    assert set(load.seconds) == {"people", "records", "indexes", "foreign_keys", "analyze"}


def test_the_schema_is_back_and_the_tables_vacuumed(fresh_database):
    before = _migrated(fresh_database)
    seed_demo_parallel(fresh_database, SIZE, SEED, sessions=3, today=TODAY, vacuum=True)
    with connect(fresh_database) as conn:
        assert schema_snapshot(conn) == before  # every index, every foreign key (validated) as migrated
        # vacuumed: every page all-visible, statistics gathered
        pages, visible = rows(conn, "SELECT relpages, relallvisible FROM pg_class WHERE relname = 'leads'")[0]
        assert pages > 0 and visible == pages
        assert scalar(conn, "SELECT count(*) FROM pg_stats WHERE tablename = 'leads'") > 0
        # the id sequences continue after the loaded rows
        assert scalar(conn, "SELECT nextval(pg_get_serial_sequence('leads', 'id'))") == SIZE.leads + 1
    conn.close()


def test_a_crm_holding_rows_is_refused_before_anything_is_written(fresh_database):
    _migrated(fresh_database)
    small = DemoSize(users=10, accounts=5, contacts=5, leads=5, deals=5)
    seed_demo_parallel(fresh_database, small, SEED, today=TODAY)
    with connect(fresh_database) as conn:
        before = fingerprint(conn)
        with pytest.raises(CrmNotEmpty, match="already holds data"):
            seed_demo_parallel(fresh_database, small, SEED + 1, today=TODAY)
        assert fingerprint(conn) == before
    conn.close()


@pytest.mark.parametrize("sessions", [0, 9, True, "2"])
def test_a_bad_number_of_sessions_is_a_value_error(fresh_database, sessions):
    with pytest.raises(ValueError, match="sessions must be"):
        seed_demo_parallel(fresh_database, SIZE, SEED, sessions=sessions, today=TODAY)
