"""Job ``analytics.precompute_aggregates`` (``precompute_aggregates``), every 10 minutes.

Folds the changes since the last run into the report aggregates; a full
rebuild on first use, after a TRUNCATE, or every
``CRMTASKS_AGGREGATES_REBUILD_HOURS`` (``crmtasks.reports.refresh`` has the
what and the guarantees). Idempotent and safe to kill -9 and re-run.
"""

from __future__ import annotations

from crmtasks.jobs import registry
from crmtasks.pg.db import database
from crmtasks.reports.refresh import refresh
from crmtasks.settings import get_settings

JOB_NAME = "precompute_aggregates"


def run() -> dict:
    """Refresh the aggregates on this thread's database connection; return the run's stats."""
    settings = get_settings()
    database.connect(reuse_if_open=True)
    # The time limit is also the statement_timeout: it stops SQL that Python cannot interrupt.
    return refresh(database.connection(), rebuild_after_hours=settings.aggregates_rebuild_hours,
                   statement_timeout_s=registry.get(JOB_NAME).time_limit_s).as_dict()
