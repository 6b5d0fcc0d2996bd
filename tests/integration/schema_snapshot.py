"""The schema of a database as comparable data, read from the catalog (no pg_dump needed)."""

from __future__ import annotations

import psycopg2

_QUERIES = {
    "relations": """
        SELECT c.relname, c.relkind, c.reloptions::text, pg_get_expr(c.relpartbound, c.oid),
               CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
    """,
    "columns": """
        SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attgenerated, a.attidentity, co.collname
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        LEFT JOIN pg_collation co ON co.oid = a.attcollation
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped
    """,
    "indexes": """
        SELECT ic.relname, pg_get_indexdef(i.indexrelid), i.indisvalid, i.indisready
        FROM pg_index i
        JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_namespace n ON n.oid = ic.relnamespace
        WHERE n.nspname = 'public'
    """,
    "constraints": """
        SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
        FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE n.nspname = 'public'
    """,
    "triggers": """
        SELECT t.tgrelid::regclass::text, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND NOT t.tgisinternal
    """,
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid), md5(pg_get_functiondef(p.oid))
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND p.prokind IN ('f', 'p')
    """,
    "extensions": "SELECT extname, extversion FROM pg_extension",
}


def schema_of(url: str) -> dict[str, list[tuple]]:
    """Relations, columns, indexes (with validity), constraints, triggers, functions and extensions of ``public``."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            snapshot = {}
            for part, query in _QUERIES.items():
                cur.execute(query)
                snapshot[part] = sorted(cur.fetchall(), key=repr)
            return snapshot
    finally:
        conn.close()


def differences(left: dict[str, list[tuple]], right: dict[str, list[tuple]]) -> dict[str, dict[str, list]]:
    """What each snapshot has that the other lacks, per part (empty when they are the same)."""
    found = {}
    for part in left:
        only_left = [row for row in left[part] if row not in right[part]]
        only_right = [row for row in right[part] if row not in left[part]]
        if only_left or only_right:
            found[part] = {"only_left": only_left, "only_right": only_right}
    return found
