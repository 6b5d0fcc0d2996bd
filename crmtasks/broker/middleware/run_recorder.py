"""Record every run of a job in ``task_runs``, and its slot in ``schedule_slots``.

A row is written when the message starts (``running``) and completed when
it ends with the job's returned stats or its error. A message skipped by
another middleware (overlap, paused, stale) gets a ``skipped`` row with the
reason; a ``queue_one`` message re-queued to wait gets none (it will run).
Trigger: ``retry`` for a retried message, ``schedule`` for one sent by the
scheduler, ``manual`` otherwise. A run left ``running`` by a worker that
died is marked failed (abandoned) when its message comes back. A job is
an actor declared with the ``job_name`` option (crmtasks.broker.options),
under which its runs are filed; other actors' messages are not recorded.
"""

from __future__ import annotations

import logging
import threading

import dramatiq

from crmtasks.broker.middleware.job_mutex import SKIP_REASON_OPTION
from crmtasks.broker.middleware.schedule_guard import message_slot
from crmtasks.broker.options import JOB_NAME_OPTION, job_options
from crmtasks.runs import history as runs
from crmtasks.runs.status import SkipReason, SlotState, Trigger
from crmtasks.scheduler import slots

logger = logging.getLogger(__name__)


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
        runs.abandon_unfinished(task, message.message_id)
        run_id = runs.start_run(task, trigger_of(message), message.message_id)
        self._current.value = (message.message_id, run_id)
        slot = message_slot(message)
        if slot is not None:
            slots.update_slot(task, slot, message_id=message.message_id, run_id=run_id)

    def after_process_message(self, broker, message, *, result=None, exception=None):
        current = getattr(self._current, "value", None)
        if current is None or current[0] != message.message_id:
            return
        self._current.value = None
        task = self._task_name(broker, message)
        runs.finish_run(current[1], stats=result, error=exception)
        slot = message_slot(message)
        if slot is not None:
            slots.update_slot(task, slot, state=SlotState.RAN)

    def after_skip_message(self, broker, message):
        task = self._task_name(broker, message)
        reason = message.options.get(SKIP_REASON_OPTION, SkipReason.STALE)
        if task is None:
            return
        runs.abandon_unfinished(task, message.message_id)
        if reason == SkipReason.QUEUED:
            return
        runs.record_skip(task, trigger_of(message), reason, message.message_id)
        slot = message_slot(message)
        if slot is not None:
            slots.update_slot(task, slot, state=SlotState.SKIPPED, reason=reason)
