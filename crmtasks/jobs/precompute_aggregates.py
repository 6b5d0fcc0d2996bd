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

from crmtasks.jobs import registry
from crmtasks.pg.db import database
from crmtasks.reports.refresh import refresh, tidy_up
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

