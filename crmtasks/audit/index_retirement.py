"""Dropping an audit_log index that a finer one replaced, once the replacement is valid on every partition.

Why a maintenance step and not the migration: PostgreSQL cannot drop a
partitioned index CONCURRENTLY, and ``DROP INDEX`` takes an ACCESS
EXCLUSIVE lock on audit_log and each partition for a moment. In a migration
it would wait behind every open transaction on the log while the writers
queue behind it. Here it is tried only after the replacement is valid (so
no query is ever left without one of the two), waits at most
``LOCK_WAIT`` for its lock and, when it does not get it, gives up without
error and is tried again on the next run: a writer waits at most that long,
once. The drop is one transaction: killed, nothing changed.
"""

from __future__ import annotations

import logging

import psycopg2.errors
from psycopg2 import sql

from crmtasks.pg import transaction

log = logging.getLogger(__name__)

# (retired index, its replacement): the 0011 BRIN on occurred_at, 128 pages a range, by 0019's, 16 pages a range.
REPLACED = (("audit_log_occurred_at_brin", "audit_log_occurred_at_brin16"),)
LOCK_WAIT = "50ms"


def retire_replaced_indexes(conn) -> int:
    """Drop each index of ``REPLACED`` whose replacement is valid; return how many were dropped.

    Parameters:
      conn: A psycopg2 connection with no transaction open (the drop runs in a transaction of its own).
    """
    dropped = 0
    for retired, replacement in REPLACED:
        if not (_exists(conn, retired) and _valid(conn, replacement)):
            continue
        try:
            with transaction(conn, local={"lock_timeout": LOCK_WAIT}) as cur:
                cur.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(retired)))
        except psycopg2.errors.LockNotAvailable:
            log.info("audit_log: index %s not retired yet (its lock was busy for %s); next run", retired, LOCK_WAIT)
            continue
        log.info("audit_log: index %s retired, replaced by %s", retired, replacement)
        dropped += 1
    return dropped


def _exists(conn, name: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (sql.Identifier(name).as_string(conn),))
        return cur.fetchone()[0]


def _valid(conn, name: str) -> bool:
    """Valid, and so on every partition: PostgreSQL marks a partitioned index valid once each has its child."""
    with conn.cursor() as cur:
        cur.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)",
                    (sql.Identifier(name).as_string(conn),))
        found = cur.fetchone()
        return bool(found and found[0])
