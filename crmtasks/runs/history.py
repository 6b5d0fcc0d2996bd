"""Recording job runs in ``task_runs``: one row per run, written at start and at finish.

Used by the RunRecorder worker middleware and by the in-process runner, so
a run looks the same in the history whoever ran it. Each write is its own
short transaction: a run's row survives its job's rollback.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import traceback

from crmtasks.models import TaskRun
from crmtasks.pg.db import connect_usable, database, rollback_open_transaction
from crmtasks.runs.processes import process_is_gone
from crmtasks.runs.status import RunStatus, SkipReason, Trigger
from crmtasks.settings import SettingsError, get_settings

TRIGGERS = tuple(trigger.value for trigger in Trigger)
_ERROR_LIMIT = 20_000


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def start_run(task: str, trigger: Trigger | str, message_id: str | None = None, started_by: str | None = None) -> int:
    """Insert a ``running`` row and return its id; ``started_by`` names who started a manual run (its retries too)."""
    if trigger not in TRIGGERS:
        raise ValueError(f"trigger {trigger!r} is not one of {TRIGGERS}")
    connect_usable()
    with database.atomic():
        run = TaskRun.create(
            task=task, trigger=trigger, message_id=message_id, status=RunStatus.RUNNING,
            started_at=_now(), stats={}, host=socket.gethostname(), pid=os.getpid(), started_by=started_by,
        )
    return run.id


# Why a run was left ``running`` and is now failed: its message came back.
ABANDONED_ERROR = ("abandoned: the worker running it stopped before the end (killed, crashed or cut off); "
                   "the message was redelivered")


def abandon_unfinished(task: str, message_id: str) -> int:
    """Mark the ``running`` runs of ``message_id`` failed; returns how many.

    A message is delivered again while one of its runs is still ``running``
    only when the worker running it died (Redis redelivers the messages of a
    worker whose heartbeat stopped). Without this, the history would show
    that run as running for ever.
    """
    connect_usable()
    rollback_open_transaction()
    with database.atomic():
        return (TaskRun.update({TaskRun.status: RunStatus.FAILED, TaskRun.finished_at: _now(),
                                TaskRun.error: ABANDONED_ERROR})
                .where((TaskRun.task == task) & (TaskRun.status == RunStatus.RUNNING)
                       & (TaskRun.message_id == message_id))
                .execute())  # by task first: task_runs is indexed on (task, started_at)


def abandoned_by_dead_holder(where: str) -> str:
    """The error of a run left ``running`` by a process that died holding its job's lock.

    Parameters:
      where(str): Which process, e.g. ``pid 4242 on web-1``.
    """
    return f"abandoned: the process holding the lock died ({where})"


def abandon_runs_of_process(task: str, host: str, pid: int, reason: str) -> int:
    """Mark the ``running`` runs of ``task`` by process ``pid`` on ``host`` failed with ``reason``; how many.

    For a process known to be dead (crmtasks.broker.holders.why_dead):
    nothing of it is running any more. Idempotent.
    """
    connect_usable()
    rollback_open_transaction()
    with database.atomic():
        return (TaskRun.update({TaskRun.status: RunStatus.FAILED, TaskRun.finished_at: _now(),
                                TaskRun.error: reason})
                .where((TaskRun.task == task) & (TaskRun.status == RunStatus.RUNNING)
                       & (TaskRun.host == host) & (TaskRun.pid == pid))
                .execute())


def abandon_dead_runs_here(task: str) -> int:
    """Mark failed the ``running`` runs of ``task`` whose process, on this host, is gone; how many.

    Called by whoever holds the job's lock, before it records its own run:
    a run killed after its lock expired (or was freed) was never taken over,
    and would otherwise stay ``running`` for ever. A pid now used by another
    process counts as alive: such a run is left alone.
    """
    host = socket.gethostname()
    connect_usable()
    rollback_open_transaction()
    with database.atomic():
        candidates = list(TaskRun.select(TaskRun.id, TaskRun.pid)
                          .where((TaskRun.task == task) & (TaskRun.status == RunStatus.RUNNING)
                                 & (TaskRun.host == host) & (TaskRun.pid != os.getpid())))
    closed = 0
    for pid in sorted({run.pid for run in candidates if run.pid is not None}):
        if process_is_gone(pid, None):
            closed += abandon_runs_of_process(task, host, pid, abandoned_by_dead_holder(f"pid {pid} on {host}"))
    return closed


def finish_run(run_id: int, *, stats: object = None, error: BaseException | None = None) -> None:
    """Mark a run succeeded (with its stats) or failed (with the error and its traceback).

    Whatever the job left uncommitted is rolled back first: a job commits
    its own work, and the run's row must not carry a half-done transaction.
    """
    connect_usable()
    rollback_open_transaction()
    values = {TaskRun.finished_at: _now()}
    if error is None:
        values[TaskRun.status] = RunStatus.SUCCEEDED
        values[TaskRun.stats] = _jsonable(stats)
    else:
        values[TaskRun.status] = RunStatus.FAILED
        values[TaskRun.error] = format_error(error)
    with database.atomic():
        TaskRun.update(values).where(TaskRun.id == run_id).execute()


def record_skip(task: str, trigger: Trigger | str, reason: SkipReason | str, message_id: str | None = None,
                started_by: str | None = None) -> int:
    """Insert a finished ``skipped`` row (the job did not run) and return its id."""
    connect_usable()
    rollback_open_transaction()
    now = _now()
    with database.atomic():
        run = TaskRun.create(
            task=task, trigger=trigger, message_id=message_id, status=RunStatus.SKIPPED,
            started_at=now, finished_at=now, stats={"skip_reason": reason},
            host=socket.gethostname(), pid=os.getpid(), started_by=started_by,
        )
    return run.id


def format_error(error: BaseException) -> str:
    """The error's type, message and traceback, cut to a size fit for a table cell, passwords masked.

    The text is shown by ``crmtasks tasks``, ``check`` and the dashboard; a
    library's message in it may echo the database or Redis URL.
    """
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    try:
        text = get_settings().scrub(text)
    except SettingsError:
        pass  # this process runs on settings it could load, so there are no others to mask
    return text[-_ERROR_LIMIT:]


def _jsonable(stats: object) -> dict:
    """Stats as a JSON object; non-dict results are kept under ``result``."""
    if stats is None:
        return {}
    if not isinstance(stats, dict):
        stats = {"result": stats}
    return json.loads(json.dumps(stats, default=str))
