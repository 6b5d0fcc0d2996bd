"""Never two runs of one job at once, across every worker on every host.

Before a job's message runs, take the job's RedisMutex with the message id
as token. When another message holds it, the job's overlap policy decides:
``skip`` acknowledges this message (SkipMessage: not retried, recorded as
skipped with reason ``overlap``); ``queue_one`` lets one message wait (it is
re-enqueued with a short delay until the lock is free) and skips the rest.
The job's name, overlap policy and lock TTL are the actor's options
(crmtasks.broker.options); an actor without them is not a job and passes.

Redis calls here wait out a Redis restart (up to 30 s): a lock that could
not be freed would block the job for its whole time limit, and a lock that
could not be taken must not let the job run unguarded (the message fails
with JobNotStarted, a transient error, and is retried).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dramatiq
import redis
from dramatiq.middleware import MiddlewareError, SkipMessage

from crmtasks.broker.mutex import RedisMutex
from crmtasks.broker.options import (
    JOB_NAME_OPTION,
    LOCK_TTL_OPTION,
    OVERLAP_OPTION,
    job_options,
    lock_ttl_ms,
)
from crmtasks.errors import CrmtasksError
from crmtasks.jobs import registry
from crmtasks.redis_client import get_redis, key, patiently
from crmtasks.runs.status import SkipReason
from crmtasks.settings import Settings

SKIP_REASON_OPTION = "crmtasks_skip_reason"
# Milliseconds a waiting (queue_one) message sleeps before trying the lock again.
QUEUE_ONE_POLL_MS = 5_000
# The lock TTL in milliseconds of a job actor declared without ``lock_ttl``:
# Dramatiq's default time limit (10 minutes) plus a minute.
DEFAULT_LOCK_TTL_MS = 660_000


def job_mutex(settings: Settings, spec: registry.JobSpec) -> RedisMutex:
    """The mutex of one job; it outlives the job's time limit by a minute."""
    return job_lock(settings, spec.name, lock_ttl_ms(spec))


def job_lock(settings: Settings, job_name: str, ttl_ms: int) -> RedisMutex:
    """The mutex of the job called ``job_name``, the one every worker and ``crmtasks run`` take.

    Parameters:
      settings(Settings): Where Redis is, and the key prefix.
      job_name(str): The job's CLI name; the lock's key is made of it.
      ttl_ms(int): The time in milliseconds after which an unreleased lock expires.
    """
    return RedisMutex(get_redis(settings), key(settings, "lock", job_name), ttl_ms=ttl_ms)


def waiting_slot(settings: Settings, job_name: str, ttl_ms: int) -> RedisMutex:
    """The single place in line of a ``queue_one`` job: at most one message waits for the running one.

    Parameters:
      settings(Settings): Where Redis is, and the key prefix.
      job_name(str): The job's CLI name; the key is made of it.
      ttl_ms(int): The time in milliseconds after which an unreleased place expires (the lock's TTL).
    """
    return RedisMutex(get_redis(settings), key(settings, "waiting", job_name), ttl_ms=ttl_ms)


class JobNotStarted(CrmtasksError, MiddlewareError):
    """The job's lock could not be taken because Redis is unreachable; the cause says why."""


class JobMutex(dramatiq.Middleware):
    """Parameters:
      settings(Settings): Where Redis is, and the key prefix.
      lock_ttl(int): The lock TTL in milliseconds of a job actor declared without ``lock_ttl``.
    """

    def __init__(self, settings: Settings, *, lock_ttl: int = DEFAULT_LOCK_TTL_MS) -> None:
        self.settings = settings
        self.lock_ttl = lock_ttl

    @property
    def actor_options(self) -> set[str]:
        return {JOB_NAME_OPTION, OVERLAP_OPTION, LOCK_TTL_OPTION}

    def _locks(self, options: Mapping[str, Any]) -> tuple[str, RedisMutex, RedisMutex]:
        """(job name, its lock, its place in line) for a job actor's options."""
        name, ttl_ms = options[JOB_NAME_OPTION], options.get(LOCK_TTL_OPTION, self.lock_ttl)
        return name, job_lock(self.settings, name, ttl_ms), waiting_slot(self.settings, name, ttl_ms)

    def before_process_message(self, broker, message):
        options = job_options(broker, message)
        if options is None:
            return
        name, lock, line = self._locks(options)
        queue_one = options.get(OVERLAP_OPTION, "skip") == "queue_one"
        try:
            taken = patiently(lambda: lock.acquire(message.message_id), what=f"taking the lock of {name}")
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise JobNotStarted(f"{name} not started: its lock is in an unreachable Redis") from error
        if taken:
            if queue_one:
                line.release(message.message_id)
            return
        if queue_one and line.acquire(message.message_id):
            broker.enqueue(message, delay=QUEUE_ONE_POLL_MS)
            message.options[SKIP_REASON_OPTION] = SkipReason.QUEUED
            raise SkipMessage(f"{name} is running; this run waits for it")
        message.options[SKIP_REASON_OPTION] = SkipReason.OVERLAP
        raise SkipMessage(f"{name} is already running")

    def after_process_message(self, broker, message, *, result=None, exception=None):
        options = job_options(broker, message)
        if options is None:
            return
        if isinstance(exception, JobNotStarted):
            return  # the lock was never taken
        name, lock, _ = self._locks(options)
        patiently(lambda: lock.release(message.message_id), what=f"freeing the lock of {name}")
