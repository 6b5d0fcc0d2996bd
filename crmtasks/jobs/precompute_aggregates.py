"""Job ``analytics.precompute_aggregates`` (``precompute_aggregates``), every 10 minutes.

Folds the changes since the last run into the report aggregates; a full
rebuild on first use, after a TRUNCATE, or every
``CRMTASKS_AGGREGATES_REBUILD_HOURS`` (``crmtasks.reports.refresh`` has the
what and the guarantees). Then deletes the report payloads of earlier
generations (``crmtasks.reports.payloads``: never served again), outside the
run's transaction so that no reader keeping a payload waits for a run, and
vacuums the change logs the run emptied (``vacuum_consumed_logs``).
Idempotent and safe to kill -9 and re-run: a kill before the deletion
leaves those payloads for the next run.
"""

from __future__ import annotations

import time

from crmtasks.jobs import registry
from crmtasks.pg.db import database
from crmtasks.reports import payloads
from crmtasks.reports.refresh import RefreshStats, refresh, vacuum_consumed_logs
from crmtasks.settings import get_settings

JOB_NAME = "precompute_aggregates"


def run() -> dict:
    """Refresh the aggregates on this thread's database connection; return the run's stats."""
    settings = get_settings()
    database.connect(reuse_if_open=True)
    conn = database.connection()
    # The time limit is also the statement_timeout: it stops SQL that Python cannot interrupt.
    stats = refresh(conn, rebuild_after_hours=settings.aggregates_rebuild_hours,
                    statement_timeout_s=registry.get(JOB_NAME).time_limit_s)
    return {**stats.as_dict(), **tidy_up(conn, stats)}


def tidy_up(conn, stats: RefreshStats) -> dict:
    """What the job does after a run has published, outside its transaction: delete the payloads of earlier
    generations, vacuum the change logs the run emptied; what each cost (the reports bench times it too)."""
    result = {}
    if stats.as_of is not None:
        started = time.perf_counter()
        result["payloads_deleted"] = payloads.forget_older(conn, stats.as_of)
        result["payloads_delete_ms"] = round((time.perf_counter() - started) * 1000, 1)
    started = time.perf_counter()
    result["logs_vacuumed"] = vacuum_consumed_logs(conn, stats)
    result["logs_vacuum_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result
