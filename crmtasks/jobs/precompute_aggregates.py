"""``analytics.precompute_aggregates``: fold the changes since the last run into the report aggregates.

Runs every 10 minutes. A run costs what changed since the previous one (a
full rebuild on first use, after a TRUNCATE, or every
``CRMTASKS_AGGREGATES_REBUILD_HOURS``); see ``crmtasks.reports.refresh`` for the
guarantees (atomic publish, nothing lost or counted twice, safe to kill and
re-run). The returned stats land in ``task_runs.stats``.
"""

from __future__ import annotations

from crmtasks.reports import refresh as aggregates
from crmtasks.jobs import registry
from crmtasks.pg.db import database
from crmtasks.settings import get_settings

TASK_NAME = "precompute_aggregates"


def run() -> dict:
    """Refresh the aggregates on this thread's database connection and return the run's stats."""
    settings = get_settings()
    database.connect(reuse_if_open=True)
    stats = aggregates.refresh(
        database.connection(),
        rebuild_after_hours=settings.aggregates_rebuild_hours,
        statement_timeout_s=registry.get(TASK_NAME).time_limit_s,
    )
    return stats.as_dict()
