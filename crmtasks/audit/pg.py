"""Small PostgreSQL helpers shared by the audit modules: transactions on either kind of connection, locks."""

from __future__ import annotations

import contextlib

import psycopg2.extensions

# pg_advisory_lock key held by one audit maintenance or restore at a time ("auditmnt" as a bigint).
MAINTENANCE_LOCK_KEY = int.from_bytes(b"auditmnt", "big")


@contextlib.contextmanager
def atomic(conn, *, repeatable_read: bool = False, read_only: bool = False):
    """One transaction on ``conn``, committed on success and rolled back on error; yields a cursor.

    Works on autocommit connections (explicit BEGIN/COMMIT: the maintenance
    connection must be autocommit for DETACH ... CONCURRENTLY) and on
    ordinary ones (commit/rollback).
    """
    options = []
    if repeatable_read:
        options.append("ISOLATION LEVEL REPEATABLE READ")
    if read_only:
        options.append("READ ONLY")
    with conn.cursor() as cur:
        if conn.autocommit:
            cur.execute("BEGIN" + (" " + ", ".join(options) if options else ""))
        else:
            if conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                raise RuntimeError("atomic() needs a connection with no transaction open")
            if options:
                cur.execute("SET TRANSACTION " + ", ".join(options))
        try:
            yield cur
        except BaseException:
            if not conn.closed:
                if conn.autocommit:
                    if conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                        cur.execute("ROLLBACK")
                else:
                    conn.rollback()
            raise
        if conn.autocommit:
            cur.execute("COMMIT")
        else:
            conn.commit()


@contextlib.contextmanager
def maintenance_lock(conn, *, wait_s: float = 60.0):
    """Hold the cluster-wide audit maintenance lock (session advisory lock) for the block.

    Waits up to ``wait_s`` seconds, then fails with lock_not_available
    (SQLSTATE 55P03, a transient fault: the job is retried). The lock goes
    away with the session, so a killed holder never blocks the next run for
    longer than its server session lives.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT set_config('lock_timeout', %s, false)", (f"{int(wait_s * 1000)}ms",))
        try:
            cur.execute("SELECT pg_advisory_lock(%s)", (MAINTENANCE_LOCK_KEY,))
        finally:
            if conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INERROR:
                conn.rollback()
            cur.execute("RESET lock_timeout")
            if not conn.autocommit:
                conn.commit()
    try:
        yield
    finally:
        if not conn.closed:
            if conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                conn.rollback()
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (MAINTENANCE_LOCK_KEY,))
            if not conn.autocommit:
                conn.commit()


def parent_columns(conn, table: str = "audit_log") -> list[str]:
    """The live columns of ``table`` in their physical order, from pg_attribute."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped "
            "ORDER BY attnum", (table,))
        return [row[0] for row in cur.fetchall()]
