"""Pausing and resuming jobs: steering schedules without a redeploy.

Pauses live in PostgreSQL (table ``job_pauses``), so every scheduler and
worker on every host sees one at once: schedulers stop enqueuing a paused
job, workers skip its messages, whoever sent them.
"""

from __future__ import annotations

import datetime

from crmtasks.models import JobPause
from crmtasks.pg import db
from crmtasks.pg.db import database

UTC = datetime.timezone.utc


def _now() -> datetime.datetime:
    return datetime.datetime.now(UTC)


def pause(task: str, note: str = "") -> None:
    """Pause a job (idempotent: a second pause updates the note)."""
    with db.connection(), database.atomic():
        (JobPause.insert(task=task, note=note, paused_at=_now())
         .on_conflict(conflict_target=[JobPause.task], update={JobPause.note: note}).execute())


def resume(task: str) -> bool:
    """Resume a job; False when it was not paused."""
    with db.connection(), database.atomic():
        return bool(JobPause.delete().where(JobPause.task == task).execute())


def pauses() -> dict[str, JobPause]:
    """Every paused job and its pause (note, when), by job name."""
    with db.connection():
        return {pause.task: pause for pause in JobPause.select()}


def is_paused(task: str) -> bool:
    """Whether ``task`` is paused now; a database error propagates (callers fail closed)."""
    with db.connection():
        return JobPause.select().where(JobPause.task == task).exists()
