"""Record every run of a job in ``task_runs``, and its slot in ``schedule_slots``.

A row is written when the message starts (``running``) and completed when
it ends with the job's returned stats or its error. A message skipped by
another middleware (overlap, paused, stale) gets a ``skipped`` row with the
reason; a ``queue_one`` message re-queued to wait gets none (it will run).
Trigger: ``retry`` for a retried message, ``schedule`` for one sent by the
scheduler, ``manual`` otherwise; who started a manual run (the message's
``crmtasks_started_by`` option) goes into ``started_by``, its retries' too. A run left ``running`` by a worker that
died is marked failed (abandoned) when its message comes back, and so is
one whose process on this host is gone, before the job records its next
run. A job never runs unrecorded: when its row cannot be written
(PostgreSQL down), the message is deferred (crmtasks.broker.middleware.fail_closed)
and runs, or is skipped, once the database is back. How a run ended, or
why a message was skipped, is written patiently: a transient fault is
tried again for up to RECORD_PATIENCE_S, so that a database blip at the
end of a run does not leave it ``running`` for ever. A job is
an actor declared with the ``job_name`` option (crmtasks.broker.options),
under which its runs are filed; other actors' messages are not recorded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import dramatiq

from crmtasks.broker import retries as transient
from crmtasks.broker.actors import STARTED_BY_OPTION
from crmtasks.broker.middleware.fail_closed import SKIP_REASON_OPTION, defer
from crmtasks.broker.middleware.schedule_guard import message_slot
from crmtasks.broker.options import JOB_NAME_OPTION, job_options
from crmtasks.runs import history as runs
from crmtasks.runs.status import SkipReason, SlotState, Trigger
from crmtasks.scheduler import slots

logger = logging.getLogger(__name__)
T = TypeVar("T")
# Seconds the end of a run (or a skip) is tried again while PostgreSQL fails with a transient fault.
RECORD_PATIENCE_S = 30.0


def patiently_recorded(record: Callable[[], T], *, what: str) -> T:
    """Return ``record()``, trying it again for up to RECORD_PATIENCE_S while it fails transiently.

    Waits 0.2 s, then doubles up to 2 s between attempts; a fault that is
    not transient (crmtasks.broker.retries), or the last one, is raised.
    ``record`` must be safe to repeat.
    """
    deadline = time.monotonic() + RECORD_PATIENCE_S
    delay = 0.2
    while True:
        try:
            return record()
        except Exception as error:
            if not transient.is_transient(error) or time.monotonic() + delay > deadline:
                raise
            logger.warning("%s: PostgreSQL failed (%s); trying again in %.1f s", what, error, delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def trigger_of(message) -> Trigger:
    if message.options.get("retries"):
        return Trigger.RETRY
    if "scheduled_at" in message.options:
        return Trigger.SCHEDULE
    return Trigger.MANUAL


class RunRecorder(dramatiq.Middleware):
    def __init__(self) -> None:
        self._current = threading.local()

    @property
    def actor_options(self) -> set[str]:
        return {JOB_NAME_OPTION}

    @staticmethod
    def _task_name(broker, message) -> str | None:
        options = job_options(broker, message)
        return options[JOB_NAME_OPTION] if options is not None else None

    def before_process_message(self, broker, message):
        task = self._task_name(broker, message)
        if task is None:
            return
        try:
            runs.abandon_unfinished(task, message.message_id)
            runs.abandon_dead_runs_here(task)
            run_id = runs.start_run(task, trigger_of(message), message.message_id,
                                    started_by=message.options.get(STARTED_BY_OPTION))
        except Exception as error:  # noqa: BLE001
            # A run that cannot be recorded does not run: decide again later.
            defer(broker, message, job=task, what="recording the run", error=error)
        self._current.value = (message.message_id, run_id)
        slot = message_slot(message)
        if slot is not None:
            try:
                slots.update_slot(task, slot, message_id=message.message_id, run_id=run_id)
            except Exception as error:  # noqa: BLE001
                # The run is recorded; its slot is linked to it when it ends.
                logger.warning("%s: slot %s not linked to run %d yet: %s", task, slot.isoformat(), run_id, error)

    def after_process_message(self, broker, message, *, result=None, exception=None):
        current = getattr(self._current, "value", None)
        if current is None or current[0] != message.message_id:
            return
        self._current.value = None
        task = self._task_name(broker, message)
        patiently_recorded(lambda: runs.finish_run(current[1], stats=result, error=exception),
                           what=f"recording the end of run {current[1]} of {task}")
        slot = message_slot(message)
        if slot is not None:
            patiently_recorded(lambda: slots.update_slot(task, slot, state=SlotState.RAN,
                                                         message_id=message.message_id, run_id=current[1]),
                               what=f"recording {task} slot {slot.isoformat()} as ran")

    def after_skip_message(self, broker, message):
        task = self._task_name(broker, message)
        reason = message.options.get(SKIP_REASON_OPTION, SkipReason.STALE)
        if task is None or reason == SkipReason.DEFERRED:
            return  # the database failed: it comes back, and is recorded then
        patiently_recorded(lambda: runs.abandon_unfinished(task, message.message_id),
                           what=f"closing the unfinished runs of {task}")
        if reason == SkipReason.QUEUED:
            return  # it waits its turn, and is recorded when it runs
        patiently_recorded(lambda: runs.record_skip(task, trigger_of(message), reason, message.message_id,
                                                    started_by=message.options.get(STARTED_BY_OPTION)),
                           what=f"recording the skip of {task}")
        slot = message_slot(message)
        if slot is not None:
            patiently_recorded(lambda: slots.update_slot(task, slot, state=SlotState.SKIPPED, reason=reason),
                               what=f"recording {task} slot {slot.isoformat()} as skipped")
