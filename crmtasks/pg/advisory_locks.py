"""Every PostgreSQL advisory-lock key crmtasks takes, in one list.

Advisory locks share one key space per database with the application's own
locks, so each key is listed here once: two operations can never pick the
same key by accident, and a reader sees in one place what serializes what.
Each key is eight ASCII bytes read as a big-endian bigint.
"""

from __future__ import annotations

import enum


def _key(name: bytes) -> int:
    return int.from_bytes(name, "big")


class AdvisoryLock(enum.IntEnum):
    """The keys, with what each one serializes.

    Pass ``lock.key`` (a plain int) as the statement parameter.
    """

    #: ``crmtasks migrate``: one process applies migrations at a time (transaction lock).
    MIGRATIONS = _key(b"crmtasks")
    #: Preparing the embedded database: only the first process seeds it (session lock).
    BOOTSTRAP = _key(b"crmboot!")
    #: Publishing a facet generation: one precompute_facets run at a time (session lock).
    FACET_PUBLISH = _key(b"crmfacet")
    #: Refreshing the report aggregates: one precompute_aggregates run at a time (session lock).
    AGGREGATES_REFRESH = _key(b"crmaggr")
    #: Audit maintenance and restore: one at a time (session lock).
    AUDIT_MAINTENANCE = _key(b"auditmnt")
    #: Creating audit_log partitions: concurrent creators of one month take turns (transaction lock).
    AUDIT_PARTITION_DDL = _key(b"auditddl")

    @property
    def key(self) -> int:
        """The bigint passed to ``pg_advisory_lock`` and friends."""
        return int(self)
