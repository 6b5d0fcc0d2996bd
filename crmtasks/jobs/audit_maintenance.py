"""Job ``system_config.audit_maintenance`` (``audit_maintenance``), daily at 02:00 UTC.

Creates the coming months' audit_log partitions and archives or deletes the
months past retention (crmtasks.audit.maintenance), then prunes the run
history and metrics files to CRMTASKS_HISTORY_DAYS (crmtasks.runs.pruning).
It uses a connection of its own rather than the pooled peewee one: DETACH
... CONCURRENTLY needs an autocommit session, and the session settings it
makes must not leak into the pool. Idempotent and safe to kill -9 and re-run.
"""

from __future__ import annotations

import psycopg2

from crmtasks.audit.maintenance import run_maintenance
from crmtasks.runs.pruning import prune_history
from crmtasks.services import database_url
from crmtasks.settings import get_settings

JOB_NAME = "audit_maintenance"
APPLICATION_NAME = "crmtasks-audit-maintenance"


def run() -> dict:
    """One maintenance pass; returns its stats (created, moved, archived, dropped, rows, bytes, ..., rows pruned)."""
    settings = get_settings()
    conn = psycopg2.connect(database_url(settings), application_name=APPLICATION_NAME)
    try:
        stats = run_maintenance(conn, settings)
        stats.update(prune_history(conn, settings))
        return stats
    finally:
        conn.close()
