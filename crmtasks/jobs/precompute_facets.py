"""Job ``analytics.precompute_facets`` (``precompute_facets``), every 5 minutes.

Builds the search index of every entity from one snapshot (a delta of the
rows changed since the last run, or a full build when one is due) and
publishes it as a new generation, atomically (``crmtasks.search.precompute``
has the what and the guarantees). Idempotent and safe to kill -9 and re-run.
"""

from __future__ import annotations

from crmtasks.jobs import registry
from crmtasks.pg.db import database
from crmtasks.search.precompute import precompute

JOB_NAME = "precompute_facets"


def run() -> dict:
    """Build and publish the search index; return the run's stats (they land in task_runs.stats)."""
    database.connect(reuse_if_open=True)
    # The time limit is also the statement_timeout: it stops SQL that Python cannot interrupt.
    return precompute(database.connection(), statement_timeout_ms=registry.get(JOB_NAME).time_limit_s * 1000)
