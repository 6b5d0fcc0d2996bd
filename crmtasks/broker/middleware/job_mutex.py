"""Never two runs of one job at once, across every worker on every host.

Before a job's message runs, take the job's RedisMutex with the message id
as token. When another message holds it, the job's overlap policy decides:
``skip`` acknowledges this message (SkipMessage: not retried, recorded as
skipped with reason ``overlap``); ``queue_one`` lets one message wait (it is
re-enqueued with a short delay until the lock is free) and skips the rest.

Redis calls here wait out a Redis restart (up to 30 s): a lock that could
not be freed would block the job for its whole time limit, and a lock that
could not be taken must not let the job run unguarded (the message fails
with JobNotStarted, a transient error, and is retried).
"""

from __future__ import annotations

import dramatiq
import redis
from dramatiq.middleware import MiddlewareError, SkipMessage

from crmtasks.jobs import registry
from crmtasks.broker.mutex import RedisMutex
from crmtasks.redis_client import get_redis, key, patiently
from crmtasks.settings import Settings

SKIP_REASON_OPTION = "crmtasks_skip_reason"
# Milliseconds a waiting (queue_one) message sleeps before trying the lock again.
QUEUE_ONE_POLL_MS = 5_000


def job_mutex(settings: Settings, spec: registry.TaskSpec) -> RedisMutex:
    """The mutex of one job; it outlives the job's time limit by a minute."""
    return RedisMutex(get_redis(settings), key(settings, "lock", spec.name), ttl_ms=(spec.time_limit_s + 60) * 1000)


def waiting_slot(settings: Settings, spec: registry.TaskSpec) -> RedisMutex:
    """The single place in line of a ``queue_one`` job."""
    return RedisMutex(get_redis(settings), key(settings, "waiting", spec.name), ttl_ms=(spec.time_limit_s + 60) * 1000)


class JobNotStarted(MiddlewareError):
    """The job's lock could not be taken because Redis is unreachable; the cause says why."""


class JobMutex(dramatiq.Middleware):
    """Parameters:
      settings(Settings): Where Redis is, and the key prefix.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def before_process_message(self, broker, message):
        spec = registry.find(message.actor_name)
        if spec is None:
            return
        try:
            taken = patiently(lambda: job_mutex(self.settings, spec).acquire(message.message_id),
                              what=f"taking the lock of {spec.name}")
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise JobNotStarted(f"{spec.name} not started: its lock is in an unreachable Redis") from error
        if taken:
            if spec.overlap == "queue_one":
                waiting_slot(self.settings, spec).release(message.message_id)
            return
        if spec.overlap == "queue_one" and waiting_slot(self.settings, spec).acquire(message.message_id):
            broker.enqueue(message, delay=QUEUE_ONE_POLL_MS)
            message.options[SKIP_REASON_OPTION] = "queued"
            raise SkipMessage(f"{spec.name} is running; this run waits for it")
        message.options[SKIP_REASON_OPTION] = "overlap"
        raise SkipMessage(f"{spec.name} is already running")

    def after_process_message(self, broker, message, *, result=None, exception=None):
        spec = registry.find(message.actor_name)
        if spec is None:
            return
        if isinstance(exception, JobNotStarted):
            return  # the lock was never taken
        patiently(lambda: job_mutex(self.settings, spec).release(message.message_id),
                  what=f"freeing the lock of {spec.name}")
