"""Never two runs of one job at once, across every worker on every host.

Before a job's message runs, take the job's RedisMutex with the message id
as token; when it is held by another message, skip this one (SkipMessage:
acknowledged, not retried, recorded as skipped with reason ``overlap``).
"""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import SkipMessage

from crmtasks import registry
from crmtasks.locks import RedisMutex
from crmtasks.redis_client import get_redis, key
from crmtasks.settings import Settings

SKIP_REASON_OPTION = "crmtasks_skip_reason"


def job_mutex(settings: Settings, spec: registry.TaskSpec) -> RedisMutex:
    """The mutex of one job; it outlives the job's time limit by a minute."""
    return RedisMutex(get_redis(settings), key(settings, "lock", spec.name), ttl_ms=(spec.time_limit_s + 60) * 1000)


class JobMutex(dramatiq.Middleware):
    """Parameters:
      settings(Settings): Where Redis is, and the key prefix.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _mutex(self, message) -> RedisMutex | None:
        try:
            spec = registry.get(message.actor_name)
        except KeyError:
            return None
        return job_mutex(self.settings, spec)

    def before_process_message(self, broker, message):
        mutex = self._mutex(message)
        if mutex is not None and not mutex.acquire(message.message_id):
            message.options[SKIP_REASON_OPTION] = "overlap"
            raise SkipMessage(f"{message.actor_name} is already running")

    def after_process_message(self, broker, message, *, result=None, exception=None):
        mutex = self._mutex(message)
        if mutex is not None:
            mutex.release(message.message_id)
