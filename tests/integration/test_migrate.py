"""Migrations: versioned, idempotent, atomic, safe when several processes run them at once."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg2
import pytest

from crmtasks.models import ALL_MODELS
from crmtasks.pg import migrate

CRM_TABLES = ["accounts", "contacts", "deals", "leads", "roles", "task_runs", "users"]


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


def test_a_failing_migration_leaves_nothing_behind(fresh_database, tmp_path, monkeypatch):
    broken = tmp_path / "migrations"
    broken.mkdir()
    (broken / "0001_ok.sql").write_text("CREATE TABLE first_table (id int);")
    (broken / "0002_broken.sql").write_text("CREATE TABLE second_table (id int); SELECT no_such_column FROM first_table;")
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", broken)
    conn = migrate.connect(fresh_database)
    with pytest.raises(psycopg2.errors.UndefinedColumn):
        migrate.migrate(conn)
    assert migrate.applied_versions(conn) == set()
    conn.close()
    assert "first_table" not in _tables(fresh_database)


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
