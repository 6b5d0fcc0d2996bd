"""Shared pieces of the audit tests: a clean audit_log, filling months, reading archives back."""

from __future__ import annotations

from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from crmtasks.audit import codecs
from crmtasks.audit.months import Month, current_month
from crmtasks.audit.partitions import create_months
from crmtasks.audit.stores import FileStore, open_store
from crmtasks.settings import load_settings


def reset_audit(url: str) -> None:
    """Drop every audit_log partition and leftover month table, and empty the ledger."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("""
            SELECT c.relname, coalesce(i.inhdetachpending, false) FROM pg_class c
            LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
            WHERE c.relname LIKE 'audit\\_log\\_p%%' AND c.relkind IN ('r', 'p')
        """)
        for name, pending in cur.fetchall():
            if pending:
                cur.execute(sql.SQL("ALTER TABLE audit_log DETACH PARTITION {} FINALIZE").format(sql.Identifier(name)))
            cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
        cur.execute("TRUNCATE audit_retention_ledger, audit_month_counts")
    conn.close()


@pytest.fixture()
def audit_conn(migrated_database_url):
    """A psycopg2 connection to this run's database with an empty audit log."""
    reset_audit(migrated_database_url)
    conn = psycopg2.connect(migrated_database_url)
    yield conn
    conn.close()


def audit_settings(tmp_path: Path, **environ):
    """Settings for the audit tests: the archive in ``tmp_path/archive`` unless ``CRMTASKS_ARCHIVE_URL`` is given."""
    base = {"DATABASE_URL": "postgresql://unused@localhost/unused", "CRMTASKS_HOME": str(tmp_path / "home")}
    if "CRMTASKS_ARCHIVE_URL" not in environ:
        base["CRMTASKS_ARCHIVE_DIR"] = str(tmp_path / "archive")
    base.update({key: str(value) for key, value in environ.items()})
    return load_settings(base)


def fill_month(conn, month: Month, rows: int, *, entity_id_mod: int = 50) -> None:
    """Create ``month`` and put ``rows`` rows in it, spread over the month (direct INSERT ... SELECT)."""
    create_months(conn, [month])
    with conn.cursor() as cur:
        cur.execute(
            """
            INSERT INTO audit_log (occurred_at, actor_id, action, entity, entity_id, changes, ip_address)
            SELECT %(start)s::timestamptz + (%(end)s::timestamptz - %(start)s::timestamptz) * (g - 0.5) / %(rows)s,
                   CASE WHEN g %% 7 = 0 THEN NULL ELSE g %% 13 END,
                   (ARRAY['create', 'update', 'view'])[1 + g %% 3], 'lead', g %% %(mod)s,
                   jsonb_build_object('field', 'status', 'to', 'q' || g, 'note', E'tab\\there "quoted" \\\\ back'),
                   CASE WHEN g %% 5 = 0 THEN NULL ELSE ('10.1.' || g %% 256 || '.' || (g / 256) %% 256)::inet END
            FROM generate_series(1, %(rows)s) AS g
            """,
            {"start": month.start, "end": month.end, "rows": rows, "mod": entity_id_mod},
        )
    conn.commit()


def old_months(count: int, retention_months: int = 12) -> list[Month]:
    """``count`` months just past the retention window, oldest first."""
    newest_expired = current_month().plus(-retention_months - 1)
    return [newest_expired.plus(-offset) for offset in reversed(range(count))]


def table_ids(conn, table: str = "audit_log") -> list[int]:
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT id FROM {}").format(sql.Identifier(table)))
        ids = [row[0] for row in cur.fetchall()]
    conn.commit()
    return ids


def table_rows(conn, table: str, where: sql.Composable = sql.SQL("true")) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT * FROM {} WHERE {} ORDER BY id").format(sql.Identifier(table), where))
        rows = cur.fetchall()
    conn.commit()
    return rows


def archived_ids(target) -> list[int]:
    """The ids in every published archive data object (first COPY column), whatever its compression.

    ``target``: the archive directory, or Settings (any store).
    """
    store = FileStore(target) if isinstance(target, Path) else open_store(target)
    ids = []
    for name in store.names(codecs.DATA_SUFFIXES):
        codec = codecs.ZSTD if name.endswith(codecs.ZSTD.suffix) else codecs.GZIP
        decoder = codec.decoder()
        text = b"".join(decoder.decompress(block) for block in store.read_blocks(name)) + decoder.finish()
        ids.extend(int(line.split(b"\t", 1)[0]) for line in text.splitlines())
    return ids
