"""Alert when a job's message fails for good (crmtasks.alerts.failures), and when the job next succeeds.

Whether a failure is final is Dramatiq's Retries middleware's decision: it
marks the message failed (``message.fail()``) when no retry is left or the
error is not one to retry (crmtasks.broker.retries), and the worker then
dead-letters it. This middleware is added *before* Retries, and Dramatiq
runs ``after_process_message`` hooks in reverse order, so its hook runs
after Retries' and reads that verdict instead of guessing it. A failure
that will be retried sends nothing. Sending never breaks the worker:
errors are logged.
"""

from __future__ import annotations

import logging

import dramatiq

from crmtasks.alerts import Incidents, failures
from crmtasks.broker.options import JOB_NAME_OPTION, job_options
from crmtasks.settings import Settings

logger = logging.getLogger(__name__)


class FailureAlerts(dramatiq.Middleware):
    """Parameters:
      settings(Settings): The alert destinations (none: this middleware does nothing) and Redis.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._incidents = Incidents(settings) if settings.alert_urls else None

    @property
    def actor_options(self) -> set[str]:
        return {JOB_NAME_OPTION}

    def after_process_message(self, broker, message, *, result=None, exception=None):
        if self._incidents is None:
            return
        options = job_options(broker, message)
        if options is None:
            return
        job = options[JOB_NAME_OPTION]
        try:
            if exception is None:
                failures.succeeded(self._incidents, job)
            elif message.failed:
                failures.failed_for_good(self._incidents, job, actor=message.actor_name,
                                         message_id=message.message_id, error=exception)
        except Exception:  # Redis down or a destination's fault: the run is recorded, the worker goes on
            logger.exception("alert for %s's message %s not sent", job, message.message_id)
