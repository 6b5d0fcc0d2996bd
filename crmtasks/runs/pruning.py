"""Bounded history: runs, slots and metrics files older than CRMTASKS_HISTORY_DAYS are deleted daily.

A step of the daily maintenance job (crmtasks.jobs.audit_maintenance),
as named idempotent operations in pg_partman's manner:

1. ``prune_schedule_slots``: slots older than the cutoff (first, because
   slots point at runs).
2. ``prune_task_runs``: runs started before the cutoff, except each job's
   latest success, which ``crmtasks check``, the overview and the overdue
   alert judge the job by.
3. ``prune_metrics_files``: the Prometheus multiprocess files of worker
   processes that are gone (no live process with that pid on this host)
   and untouched for as long.

Rows go in batches, each its own short transaction: a batch locks only the
rows it deletes, skips rows a writer holds (``FOR UPDATE SKIP LOCKED``),
waits at most ``LOCK_TIMEOUT_MS`` for anything else and then stops until
the next run. Inserts into the same tables never wait for it. A kill -9
loses at most the batch in flight (rolled back), and a re-run goes on from
whatever is left: every step is idempotent.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
from pathlib import Path

import psutil
import psycopg2
import psycopg2.errors

from crmtasks.pg import load_sql, transaction
from crmtasks.settings import Settings

logger = logging.getLogger(__name__)
UTC = datetime.timezone.utc
BATCH_ROWS = 5000
LOCK_TIMEOUT_MS = 2000
# prometheus_client's multiprocess files: <kind>_<pid>.db, e.g. counter_123.db, gauge_max_123.db.
_METRICS_FILE = re.compile(r"^[a-z_]+_(\d+)\.db$")


def history_cutoff(settings: Settings, now: datetime.datetime | None = None) -> datetime.datetime:
    """The oldest time kept: ``now`` minus CRMTASKS_HISTORY_DAYS."""
    return (now or datetime.datetime.now(UTC)) - datetime.timedelta(days=settings.history_days)


def prune_history(conn, settings: Settings, *, now: datetime.datetime | None = None,
                  batch_rows: int = BATCH_ROWS) -> dict:
    """Run the three steps; returns the stats the maintenance job reports.

    Parameters:
      conn: A psycopg2 connection with no transaction open (each batch is one transaction on it).
      settings(Settings): ``history_days`` and where the metrics files are.
      now(datetime|None): The clock (tests); default: now, UTC.
      batch_rows(int): Most rows deleted per transaction.

    Stats: history_days, task_runs_pruned, schedule_slots_pruned,
    metrics_files_pruned (counts), and history_incomplete (True when a
    batch gave up on a lock; the next run goes on).
    """
    cutoff = history_cutoff(settings, now)
    slots, slots_done = prune_schedule_slots(conn, cutoff, batch_rows=batch_rows)
    runs, runs_done = prune_task_runs(conn, cutoff, batch_rows=batch_rows)
    files = prune_metrics_files(settings.metrics_root, cutoff)
    stats = {"history_days": settings.history_days, "task_runs_pruned": runs, "schedule_slots_pruned": slots,
             "metrics_files_pruned": files, "history_incomplete": not (slots_done and runs_done)}
    logger.info("history pruned to %d days: %d runs, %d slots, %d metrics files", settings.history_days,
                runs, slots, files)
    return stats


def prune_schedule_slots(conn, cutoff: datetime.datetime, *, batch_rows: int = BATCH_ROWS) -> tuple[int, bool]:
    """Delete slots before ``cutoff`` in batches; returns (rows deleted, True when none is left to try)."""
    return _in_batches(conn, "prune_schedule_slots", {"cutoff": cutoff, "batch": batch_rows})


def prune_task_runs(conn, cutoff: datetime.datetime, *, batch_rows: int = BATCH_ROWS) -> tuple[int, bool]:
    """Delete runs started before ``cutoff`` but each job's latest success; returns (rows, finished)."""
    with transaction(conn) as cur:
        cur.execute(load_sql("crmtasks.runs", "latest_successes"))
        keep = [row[0] for row in cur.fetchall()]
    return _in_batches(conn, "prune_task_runs", {"cutoff": cutoff, "batch": batch_rows, "keep": keep})


def _in_batches(conn, statement: str, params: dict) -> tuple[int, bool]:
    total = 0
    while True:
        try:
            with transaction(conn, local={"lock_timeout": str(LOCK_TIMEOUT_MS)}) as cur:
                cur.execute(load_sql("crmtasks.runs", statement), params)
                deleted = cur.rowcount
        except psycopg2.errors.LockNotAvailable:
            logger.warning("%s: a lock was held longer than %d ms; the rest waits for the next run",
                           statement, LOCK_TIMEOUT_MS)
            return total, False
        total += deleted
        if deleted < params["batch"]:
            return total, True


def prune_metrics_files(root: Path, cutoff: datetime.datetime) -> int:
    """Delete the metrics files of gone processes untouched since ``cutoff``, under every group's directory.

    Parameters:
      root(Path): The directory of the worker groups' metrics directories (Settings.metrics_root).
      cutoff(datetime): Files modified before it may go.

    A file of a live process is kept however old: its process may write it
    again. Only files of this host can be judged, so each host prunes its own
    (the maintenance job runs on one host a day; see the README).
    """
    if not root.is_dir():
        return 0
    removed = 0
    for path in sorted(root.glob("*/*.db")):
        match = _METRICS_FILE.match(path.name)
        if match is None or psutil.pid_exists(int(match.group(1))):
            continue
        try:
            if path.stat().st_mtime < cutoff.timestamp():
                os.unlink(path)
                removed += 1
        except FileNotFoundError:  # another pruner got there first
            continue
    return removed
