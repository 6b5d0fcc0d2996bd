"""Migrations: versioned, idempotent, atomic, safe when several processes run them at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit

import psycopg2
import pytest

from crmtasks.audit import record
from crmtasks.audit.partition_indexes import index_partitions
from crmtasks.models import ALL_MODELS
from crmtasks.pg import migrate
from tests.integration.schema_snapshot import differences, schema_of

CRM_TABLES = ["accounts", "contacts", "deals", "leads", "roles", "task_runs", "users"]
# Enough leads that building 0002's indexes on them takes seconds, not milliseconds.
POPULATED_LEADS = 100_000


def _tables(url):
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        return [row[0] for row in cur.fetchall()]


def test_fresh_database_gets_every_table_and_a_ledger(fresh_database):
    conn = migrate.connect(fresh_database)
    with pytest.raises(migrate.SchemaMissing, match="run `crmtasks migrate`"):
        migrate.require_current(conn)
    applied = migrate.migrate(conn)
    assert [m.version for m in applied] == [m.version for m in migrate.available()]
    migrate.require_current(conn)
    assert migrate.migrate(conn) == []  # a re-run does nothing
    conn.close()
    assert set(CRM_TABLES) | {"schema_migrations"} <= set(_tables(fresh_database))


def test_foreign_keys_are_named_for_reporting_tools(migrated_database_url):
    with psycopg2.connect(migrated_database_url) as conn, conn.cursor() as cur:
        cur.execute("""
            SELECT tc.table_name, kcu.column_name, ccu.table_name
            FROM information_schema.table_constraints tc
            JOIN information_schema.key_column_usage kcu USING (constraint_name, table_schema)
            JOIN information_schema.constraint_column_usage ccu USING (constraint_name, table_schema)
            WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = 'public'
        """)
        foreign_keys = set(cur.fetchall())
    assert {("roles", "parent_id", "roles"), ("users", "role_id", "roles"), ("accounts", "owner_id", "users"),
            ("contacts", "account_id", "accounts"), ("contacts", "owner_id", "users"), ("leads", "owner_id", "users"),
            ("deals", "account_id", "accounts"), ("deals", "owner_id", "users")} <= foreign_keys


def test_models_describe_the_migrated_schema(migrated_database_url):
    with psycopg2.connect(migrated_database_url) as conn, conn.cursor() as cur:
        for model in ALL_MODELS:
            table = model._meta.table_name
            cur.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,))
            columns = {row[0] for row in cur.fetchall()}
            modeled = {field.column_name for field in model._meta.sorted_fields}
            assert modeled == columns, f"{table}: model {sorted(modeled)} vs table {sorted(columns)}"


def test_a_failing_migration_leaves_nothing_of_itself_behind(fresh_database, tmp_path, monkeypatch):
    broken = tmp_path / "migrations"
    broken.mkdir()
    (broken / "0001_ok.sql").write_text("CREATE TABLE first_table (id int);")
    (broken / "0002_broken.sql").write_text("CREATE TABLE second_table (id int); SELECT no_such_column FROM first_table;")
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", broken)
    conn = migrate.connect(fresh_database)
    with pytest.raises(psycopg2.errors.UndefinedColumn):
        migrate.migrate(conn)
    assert migrate.applied_versions(conn) == {1}  # each migration is one transaction
    assert "second_table" not in _tables(fresh_database)
    (broken / "0002_broken.sql").write_text("CREATE TABLE second_table (id int);")
    assert [m.version for m in migrate.migrate(conn)] == [2]
    conn.close()
    assert {"first_table", "second_table"} <= set(_tables(fresh_database))


def test_concurrent_migrate_processes_apply_each_version_once(fresh_database):
    env = dict(os.environ, DATABASE_URL=fresh_database)
    processes = [subprocess.Popen([sys.executable, "-m", "crmtasks", "migrate"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [(p.wait(timeout=60), p.stdout.read(), p.stderr.read()) for p in processes]
    assert [code for code, _, _ in results] == [0, 0, 0, 0], results
    outputs = [out for _, out, _ in results]
    assert sum("applied 0001_crm_core" in out for out in outputs) == 1
    assert sum("schema is up to date" in out for out in outputs) == 3
    with psycopg2.connect(fresh_database) as conn, conn.cursor() as cur:
        cur.execute("SELECT version, count(*) FROM schema_migrations GROUP BY version HAVING count(*) > 1")
        assert cur.fetchall() == []


@pytest.fixture(scope="session")
def fresh_install_schema(server_database_url):
    """The schema of an empty database given every migration in one `migrate` call: a fresh install."""
    name = f"crmtasks_fresh_install_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(server_database_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    url = urlsplit(server_database_url)._replace(path=f"/{name}").geturl()
    try:
        conn = migrate.connect(url)
        migrate.migrate(conn)
        conn.close()
        yield schema_of(url)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _migrate_to(url, version):
    """Apply the migrations up to ``version`` only (as an older crmtasks release would have)."""
    everything = migrate.available()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(migrate, "available", lambda: [m for m in everything if m.version <= version])
        conn = migrate.connect(url)
        try:
            return migrate.migrate(conn)
        finally:
            conn.close()


def _add_leads(url, rows):
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            """
            INSERT INTO leads (name, company, email, status, industry, source, rating)
            SELECT 'Lead ' || md5(g::text), 'Company ' || g %% 5000, md5(g::text) || '@example.com',
                   (ARRAY['New', 'Working', 'Converted'])[1 + g %% 3], 'Industry ' || g %% 20,
                   'Source ' || g %% 7, 'Rating ' || g %% 3
            FROM generate_series(1, %s) AS g
            """, (rows,))
    conn.close()


def _invalid_indexes(url):
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid ORDER BY 1")
        found = [row[0] for row in cur.fetchall()]
    conn.close()
    return found


def test_migrating_one_version_at_a_time_over_crm_rows_gives_the_fresh_install_schema(fresh_database,
                                                                                      fresh_install_schema):
    for migration in migrate.available():
        assert [m.version for m in _migrate_to(fresh_database, migration.version)] == [migration.version]
        if migration.version == 1:
            _add_leads(fresh_database, 500)  # an existing CRM: the later indexes are built over rows
    assert differences(schema_of(fresh_database), fresh_install_schema) == {}


def test_an_invalid_index_is_not_current_and_migrate_rebuilds_it(fresh_database, fresh_install_schema):
    conn = migrate.connect(fresh_database)
    migrate.migrate(conn)
    with conn.cursor() as cur:  # what an index build cut short leaves behind
        cur.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'leads_status_id_idx'::regclass")
    conn.commit()
    with pytest.raises(migrate.SchemaMissing, match="invalid index.*leads_status_id_idx"):
        migrate.require_current(conn)
    assert migrate.migrate(conn) == []  # nothing new to apply, but the index is built again
    migrate.require_current(conn)
    conn.close()
    assert _invalid_indexes(fresh_database) == []
    assert differences(schema_of(fresh_database), fresh_install_schema) == {}


def test_a_ledger_written_before_concurrent_builds_counts_as_complete(fresh_database, fresh_install_schema):
    conn = migrate.connect(fresh_database)
    migrate.migrate(conn)
    with conn.cursor() as cur:  # the ledger as crmtasks wrote it when every migration was a single transaction
        cur.execute("CREATE TEMP TABLE current_ledger AS SELECT * FROM schema_migrations")
        cur.execute("DROP TABLE schema_migrations")
        cur.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
                    "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        cur.execute("INSERT INTO schema_migrations SELECT version, name, checksum, applied_at FROM current_ledger")
    conn.commit()
    migrate.require_current(conn)  # an older worker's ledger reads as complete, unaltered
    assert migrate.migrate(conn) == []
    conn.close()
    assert differences(schema_of(fresh_database), fresh_install_schema) == {}


def _migrate_process(url):
    return subprocess.Popen([sys.executable, "-m", "crmtasks", "migrate"], env=dict(os.environ, DATABASE_URL=url),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _index_build_on_leads(cur, phase="%"):
    """(backend pid, command) of an index build on leads in progress (in a phase LIKE ``phase``), or None."""
    cur.execute("SELECT pid, command FROM pg_stat_progress_create_index WHERE relid = to_regclass('leads') "
                "AND phase LIKE %s", (phase,))
    return cur.fetchone()


@pytest.mark.slow
def test_writes_to_a_populated_table_go_on_while_migrate_builds_its_indexes(fresh_database, fresh_install_schema):
    _migrate_to(fresh_database, 1)
    _add_leads(fresh_database, POPULATED_LEADS)
    writer = psycopg2.connect(fresh_database)
    writer.autocommit = True
    with writer.cursor() as cur:
        # A writer that would rather fail than queue: any lock held by an index build shows up as an error.
        cur.execute("SET lock_timeout = '2s'")
    observer = psycopg2.connect(fresh_database)
    observer.autocommit = True
    child = _migrate_process(fresh_database)
    written_during_builds, refused = 0, []
    with writer.cursor() as write, observer.cursor() as look:
        while child.poll() is None:
            building = _index_build_on_leads(look) is not None
            try:
                write.execute("INSERT INTO leads (name, status) VALUES ('written during migrate', 'New')")
            except psycopg2.errors.LockNotAvailable as error:
                refused.append(str(error).strip())
                continue
            written_during_builds += building
    out, err = child.communicate()
    assert child.returncode == 0, out + err
    assert refused == []
    assert written_during_builds > 0, "no insert happened while an index was being built on leads"
    with writer.cursor() as cur:
        cur.execute("SELECT count(*) FROM leads WHERE name = 'written during migrate'")
        assert cur.fetchone()[0] >= written_during_builds
    writer.close()
    observer.close()
    assert differences(schema_of(fresh_database), fresh_install_schema) == {}


@pytest.mark.slow
def test_kill_9_during_an_index_build_then_migrate_again(fresh_database, fresh_install_schema):
    _migrate_to(fresh_database, 1)
    _add_leads(fresh_database, POPULATED_LEADS)
    observer = psycopg2.connect(fresh_database)
    observer.autocommit = True
    child = _migrate_process(fresh_database)
    with observer.cursor() as cur:
        deadline = time.monotonic() + 120
        # Mid-build: scanning the table is most of a build, so the kill lands before it ends.
        while ((build := _index_build_on_leads(cur, "building index%")) is None and child.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.02)
        assert build is not None, "no index build on leads was seen"
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        cur.execute("SELECT pg_terminate_backend(%s)", (build[0],))  # the crash takes the server session too
        while _index_build_on_leads(cur) is not None:
            time.sleep(0.02)
    observer.close()
    assert build[1] == "CREATE INDEX CONCURRENTLY"
    assert _invalid_indexes(fresh_database), "the interrupted build left no invalid index"
    conn = migrate.connect(fresh_database)
    with pytest.raises(migrate.SchemaMissing, match="0002_search_facets"):
        migrate.require_current(conn)
    conn.close()
    again = _migrate_process(fresh_database)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, out + err
    assert "applied 0002_search_facets" in out
    assert _invalid_indexes(fresh_database) == []
    conn = migrate.connect(fresh_database)
    migrate.require_current(conn)
    conn.close()
    assert differences(schema_of(fresh_database), fresh_install_schema) == {}


RETIRED_FACET_TABLES = {"facet_counts", "facet_current", "facet_generations"}


def test_0017_drops_the_retired_facet_tables_while_a_writer_holds_crm_tables_open(fresh_database):
    """0017 drops the tables nothing reads since the search index, waiting on no lock of a CRM table."""
    _migrate_to(fresh_database, 16)
    assert RETIRED_FACET_TABLES <= set(_tables(fresh_database))
    with psycopg2.connect(fresh_database) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO facet_generations (as_of) VALUES (now()) RETURNING id")
        generation = cur.fetchone()[0]
        cur.execute("INSERT INTO facet_current (generation_id, as_of) VALUES (%s, now())", (generation,))
        cur.execute("INSERT INTO facet_counts VALUES (%s, 'leads', '', NULL, 'status', 'New', 3)", (generation,))
    conn.close()
    writer = psycopg2.connect(fresh_database)  # a transaction left open on leads and users while 0017 runs
    with writer.cursor() as cur:
        cur.execute("INSERT INTO leads (name, status) VALUES ('written during 0017', 'New')")
        cur.execute("SELECT * FROM users FOR UPDATE")
    started = time.monotonic()
    assert [m.version for m in _migrate_to(fresh_database, 17)] == [17]
    assert time.monotonic() - started < 5  # not waiting for the writer (the migration's lock_timeout is 10 s)
    writer.commit()
    writer.close()
    assert not RETIRED_FACET_TABLES & set(_tables(fresh_database))
    assert _migrate_to(fresh_database, 17) == []  # applied once


def test_0019_waits_at_most_its_lock_timeout_for_an_audit_writer_and_applies_on_a_later_run(fresh_database):
    """0019's CREATE INDEX ON ONLY audit_log needs a SHARE lock on audit_log: an open writer's transaction makes it
    fail after 200 ms (inserts queue behind it no longer than that), and it applies once the writer is done."""
    _migrate_to(fresh_database, 18)
    writer = psycopg2.connect(fresh_database)  # an audit row written, its transaction still open
    try:
        record("update", "lead", 1, connection=writer)
        started = time.monotonic()
        with pytest.raises(psycopg2.errors.LockNotAvailable):
            _migrate_to(fresh_database, 19)
        assert time.monotonic() - started < 5
        writer.commit()
    finally:
        writer.close()
    assert [m.version for m in _migrate_to(fresh_database, 19)] == [19]
    conn = psycopg2.connect(fresh_database)
    conn.autocommit = True
    try:
        validity = "SELECT indisvalid FROM pg_index WHERE indexrelid = 'audit_log_occurred_at_brin16'::regclass"
        with conn.cursor() as cur:
            cur.execute(validity)
            assert cur.fetchone() == (False,)  # on the parent only: the month's partition waits for the maintenance
        assert index_partitions(conn) == 1
        with conn.cursor() as cur:
            cur.execute(validity)
            assert cur.fetchone() == (True,)
    finally:
        conn.close()
