"""The cluster-wide audit maintenance lock: one maintenance pass or restore at a time."""

from __future__ import annotations

import contextlib

import psycopg2.extensions

from crmtasks.pg import AdvisoryLock


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
            cur.execute("SELECT pg_advisory_lock(%s)", (AdvisoryLock.AUDIT_MAINTENANCE.key,))
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
                cur.execute("SELECT pg_advisory_unlock(%s)", (AdvisoryLock.AUDIT_MAINTENANCE.key,))
            if not conn.autocommit:
                conn.commit()
