"""``seed_audit(defer_indexes=True)``, as the benchmark seeds: the same rows, every index back on every partition."""

from __future__ import annotations

import datetime

from crmtasks.demo import seed_audit
from crmtasks.pg import migrate

TODAY = datetime.date(2025, 6, 15)


def audit_indexes(conn) -> list[tuple]:
    """Every index of audit_log and of its partitions: (table, definition, valid), the names' part made by PostgreSQL."""
    with conn.cursor() as cur:
        cur.execute("SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i "
                    "JOIN pg_class c ON c.oid = i.indrelid WHERE c.relname LIKE 'audit\\_log%%' ORDER BY 1, 2")
        found = cur.fetchall()
    conn.commit()
    return found


def audit_rows(conn) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute("SELECT occurred_at, actor_id, action, entity, entity_id, changes::text, ip_address::text "
                    "FROM audit_log ORDER BY id")
        found = cur.fetchall()
    conn.commit()
    return found


def test_deferred_indexes_give_the_same_rows_and_the_same_indexes(fresh_database):
    conn = migrate.connect(fresh_database)
    try:
        migrate.migrate(conn)
        conn.commit()
        counts = seed_audit(conn, 3000, seed=5, today=TODAY)
        rows, indexes = audit_rows(conn), audit_indexes(conn)
        assert counts["audit partitions created"] >= 24 and len(indexes) > 3 * 24  # three per partition, and the parent's
        with conn.cursor() as cur:
            cur.execute("TRUNCATE audit_log")
        conn.commit()
        assert seed_audit(conn, 3000, seed=5, today=TODAY, defer_indexes=True)["audit_log"] == 3000
        assert audit_rows(conn) == rows
        assert audit_indexes(conn) == indexes  # same names and definitions, every one valid
        assert all(valid for _, _, valid in indexes)
    finally:
        conn.close()
