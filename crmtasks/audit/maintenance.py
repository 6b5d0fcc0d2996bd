"""The audit maintenance pass, as named idempotent steps run in order (pg_partman's run_maintenance).

1. ``premake``: create the partitions of the current month and the next
   CRMTASKS_AUDIT_PREMAKE_MONTHS months (ATTACH: never blocks writers).
2. ``retention``: resume unfinished months, then archive or delete the
   partitions past CRMTASKS_AUDIT_RETENTION_MONTHS (crmtasks.audit.retention).
3. ``index_partitions``: build an index a migration added ON ONLY audit_log
   on each older partition, CONCURRENTLY (crmtasks.audit.partition_indexes).
4. ``retire_replaced_indexes``: drop an index a finer one replaced, once the
   replacement is valid, waiting 50 ms at most for its lock
   (crmtasks.audit.index_retirement).
5. ``count_past_months``: count each past month once for ``month_counts``
   (crmtasks.audit.month_counts).

There is no "move rows out of the DEFAULT partition" step because the design
has no DEFAULT partition (see crmtasks.audit.log): ``moved`` is always 0. If
someone adds one anyway, retention is skipped and reported, because
PostgreSQL refuses DETACH ... CONCURRENTLY while a DEFAULT partition exists.

The pass yields the CPU to the application's writers: it runs at
CRMTASKS_AUDIT_MAINTENANCE_NICENESS and in SCHED_IDLE
(CRMTASKS_AUDIT_MAINTENANCE_IDLE), in a thread of its own and, where the
OS allows, in its PostgreSQL server process (crmtasks.audit.priority); its
index builds and scans use no parallel workers (each would take a core, at
normal priority).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging

from crmtasks.audit import priority
from crmtasks.audit.index_retirement import retire_replaced_indexes
from crmtasks.audit.locking import maintenance_lock
from crmtasks.audit.month_counts import count_past_months
from crmtasks.audit.months import Month, current_month
from crmtasks.audit.partition_indexes import index_partitions
from crmtasks.audit.partitions import create_months, list_partitions
from crmtasks.audit.pause import pause_point
from crmtasks.audit.retention import apply_retention
from crmtasks.settings import Settings

log = logging.getLogger(__name__)


def premake_months(current: Month, premake: int) -> list[Month]:
    """The current month and the ``premake`` months after it."""
    return [current.plus(offset) for offset in range(premake + 1)]


def run_maintenance(conn, settings: Settings, *, now: datetime.datetime | None = None) -> dict:
    """Run every step under the maintenance lock and return the stats for task_runs.

    Parameters:
      conn: A psycopg2 connection used only by this pass; it is switched to
        autocommit (DETACH ... CONCURRENTLY must run outside a transaction block).
      settings: Retention, premake, hold and archive directory.
      now(datetime|None): The clock (tests); default: now, UTC.

    Stats: created (months), moved (always 0, no DEFAULT partition),
    archived (months), dropped (tables), rows (rows that left the database),
    bytes (archive bytes written), plus finalized, held, irregular, conflicts,
    indexed (partition indexes built), counted (past months counted).
    Idempotent; safe to kill -9 at any point and run again.
    """
    conn.autocommit = True
    niceness, idle = settings.audit_maintenance_niceness, settings.audit_maintenance_idle
    backend_before = priority.lower_backend(conn, niceness, idle=idle)
    try:
        return priority.run_niced(lambda: _run_steps(conn, settings, current_month(now)), niceness, idle=idle,
                                  cancel=conn.cancel)
    finally:
        priority.restore_backend(conn, backend_before)


def _run_steps(conn, settings: Settings, current: Month) -> dict:
    with maintenance_lock(conn):
        with conn.cursor() as cur:
            # Every DDL statement here waits at most this long for a lock;
            # none of them conflicts with inserts, this only bounds the run.
            cur.execute("SET lock_timeout = '60s'")
            # CREATE INDEX CONCURRENTLY on a big partition would take a core per worker from the writers.
            cur.execute("SET max_parallel_maintenance_workers = 0")
            # So would the scans of a month (the archive's and the drop's count(*)): parallel workers are
            # server processes of their own, at normal priority whatever this session's process runs at.
            cur.execute("SET max_parallel_workers_per_gather = 0")
        created = create_months(conn, premake_months(current, settings.audit_premake_months))
        if created:
            pause_point(settings, "after_premake")
        stats = {"created": len(created), "moved": 0, "archived": 0, "dropped": 0, "rows": 0, "bytes": 0}
        default = [p.name for p in list_partitions(conn) if p.is_default]
        if default:
            log.error("audit_log has a DEFAULT partition %s: retention skipped (DETACH CONCURRENTLY is refused)",
                      default[0])
            stats["default_partition"] = default[0]
        else:
            stats.update(dataclasses.asdict(apply_retention(conn, settings, current)))
        stats["indexed"] = index_partitions(conn)
        stats["indexes_retired"] = retire_replaced_indexes(conn)
        stats["counted"] = count_past_months(conn, current)
        stats.update(policy=settings.audit_retention_policy, retention_months=settings.audit_retention_months,
                     hold=settings.audit_hold)
        return stats
