"""Record every run of a registered job in ``task_runs``.

A row is written when the message starts (``running``) and completed when
it ends with the job's returned stats or its error. A message skipped by
another middleware (overlap, or periodiq's stale-schedule check) gets a
``skipped`` row with the reason. Trigger: ``retry`` for a retried message,
``schedule`` for one sent by the scheduler, ``manual`` otherwise.
"""

from __future__ import annotations

import logging
import threading

import dramatiq

from crmtasks import registry, runs
from crmtasks.middleware.job_mutex import SKIP_REASON_OPTION

logger = logging.getLogger(__name__)


def trigger_of(message) -> str:
    if message.options.get("retries"):
        return "retry"
    if "scheduled_at" in message.options:
        return "schedule"
    return "manual"


class RunRecorder(dramatiq.Middleware):
    def __init__(self) -> None:
        self._run_ids = threading.local()

    @staticmethod
    def _task_name(message) -> str | None:
        try:
            return registry.get(message.actor_name).name
        except KeyError:
            return None

    def before_process_message(self, broker, message):
        task = self._task_name(message)
        if task is None:
            return
        self._run_ids.value = (message.message_id, runs.start_run(task, trigger_of(message), message.message_id))

    def after_process_message(self, broker, message, *, result=None, exception=None):
        current = getattr(self._run_ids, "value", None)
        if current is None or current[0] != message.message_id:
            return
        self._run_ids.value = None
        runs.finish_run(current[1], stats=result, error=exception)

    def after_skip_message(self, broker, message):
        task = self._task_name(message)
        if task is None:
            return
        reason = message.options.get(SKIP_REASON_OPTION, "stale")
        runs.record_skip(task, trigger_of(message), reason, message.message_id)
