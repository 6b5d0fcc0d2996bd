"""Every PostgreSQL advisory-lock key crmtasks takes, in one list.

Advisory locks share one key space per database with the application's own
locks, so each key is listed here once: two operations can never pick the
same key by accident, and a reader sees in one place what serializes what.
Each key is eight ASCII bytes read as a big-endian bigint.
"""

from __future__ import annotations

import enum
import time

import psycopg2.extensions


def _key(name: bytes) -> int:
    return int.from_bytes(name, "big")


class AdvisoryLock(enum.IntEnum):
    """The keys, with what each one serializes.

    Pass ``lock.key`` (a plain int) as the statement parameter.
    """

    #: ``crmtasks migrate``: one process applies migrations at a time (session lock, taken by polling).
    MIGRATIONS = _key(b"crmtasks")
    #: Preparing the embedded database: only the first process seeds it (session lock, taken by polling).
    BOOTSTRAP = _key(b"crmboot!")
    #: Publishing a facet generation: one precompute_facets run at a time (session lock).
    FACET_PUBLISH = _key(b"crmfacet")
    #: Refreshing the report aggregates: one precompute_aggregates run at a time (transaction lock).
    AGGREGATES_REFRESH = _key(b"crmaggr")
    #: Audit maintenance and restore: one at a time (session lock).
    AUDIT_MAINTENANCE = _key(b"auditmnt")
    #: Creating audit_log partitions: concurrent creators of one month take turns (transaction lock).
    AUDIT_PARTITION_DDL = _key(b"auditddl")

    @property
    def key(self) -> int:
        """The bigint passed to ``pg_advisory_lock`` and friends."""
        return int(self)


def acquire_polling(conn, lock: AdvisoryLock, *, poll_s: float = 0.1) -> None:
    """Take ``lock`` as a session lock, waiting for it without holding a snapshot.

    Why not ``pg_advisory_lock``: a session blocked in that call keeps its
    statement's snapshot for the whole wait, and ``CREATE INDEX
    CONCURRENTLY``, which the holder of the migrations lock runs, waits for
    every older snapshot in the database: the two would deadlock. A
    ``pg_try_advisory_lock`` between sleeps holds a snapshot for an instant.

    Parameters:
      conn(connection): A psycopg2 connection; without autocommit, each failed
        try is rolled back (the lock, once taken, outlives the transaction).
      lock(AdvisoryLock): The key to take; freed by ``pg_advisory_unlock`` or when the session ends.
      poll_s(float): Seconds between tries.
    """
    if conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
        raise RuntimeError("acquire_polling() needs a connection with no transaction open")
    while True:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", (lock.key,))
            taken = cur.fetchone()[0]
        if not conn.autocommit:
            conn.commit()
        if taken:
            return
        time.sleep(poll_s)
