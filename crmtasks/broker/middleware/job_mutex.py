"""Never two runs of one job at once, across every worker on every host.

Before a job's message runs, take the job's RedisMutex with the message id
as token; the lock names this worker process (crmtasks.broker.holders).
When another holder has it, the job's overlap policy decides: ``skip``
acknowledges this message (SkipMessage: not retried, recorded as skipped
with reason ``overlap``); ``queue_one`` lets one message wait (it is
re-enqueued with a short delay until the lock is free) and skips the rest.
A holder known to be dead (killed on this host, or a worker whose
heartbeat stopped) does not count: its lock is taken over at once and the
runs it left ``running`` are closed as failed (``take_job_lock``).
The job's name, overlap policy and lock TTL are the actor's options
(crmtasks.broker.options); an actor without them is not a job and passes.

Redis calls here wait out a Redis restart (up to 30 s): a lock that could
not be freed would block the job for its whole time limit, and a lock that
could not be taken must not let the job run unguarded (the message fails
with JobNotStarted, a transient error, and is retried). Any other error
while deciding defers the message (crmtasks.broker.middleware.fail_closed).
The lock is freed, and the message's place in line given up, whatever
becomes of the message: it ran, failed, or a later middleware skipped it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import dramatiq
import redis
from dramatiq.middleware import SkipMessage

from crmtasks.broker.holders import LockHolder, why_dead
from crmtasks.broker.middleware.fail_closed import (
    SKIP_REASON_OPTION,
    JobNotStarted,
    defer,
)
from crmtasks.broker.mutex import RedisMutex
from crmtasks.broker.options import (
    JOB_NAME_OPTION,
    LOCK_TTL_OPTION,
    OVERLAP_OPTION,
    job_options,
    lock_ttl_ms,
)
from crmtasks.jobs import registry
from crmtasks.redis_client import get_redis, key, patiently
from crmtasks.runs import history as runs
from crmtasks.runs.status import SkipReason
from crmtasks.settings import Settings

__all__ = ["DEFAULT_LOCK_TTL_MS", "QUEUE_ONE_POLL_MS", "SKIP_REASON_OPTION", "JobMutex", "JobNotStarted",
           "job_lock", "job_mutex", "take_job_lock", "waiting_slot"]

logger = logging.getLogger(__name__)
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


def take_job_lock(settings: Settings, lock: RedisMutex, holder: LockHolder, job_name: str) -> bool:
    """Take the job's lock for ``holder``; False when a holder that may be alive has it.

    A lock whose holder is known to be dead (crmtasks.broker.holders.why_dead)
    is taken over at once, atomically (of several takers, one wins). Before
    that, the runs of the job that the dead holder's process left
    ``running`` are closed as failed, with the reason; so a run is never
    left ``running`` by a takeover, and a failure to close them (PostgreSQL
    down) leaves the lock as it was. Safe to repeat.

    Parameters:
      settings(Settings): Where Redis is (heartbeats), and the key prefix.
      lock(RedisMutex): The job's lock (``job_lock``).
      holder(LockHolder): Who takes it (``LockHolder.this_process(token)``).
      job_name(str): The job's CLI name, whose runs are closed.
    """
    if lock.acquire(holder):
        return True
    current = lock.holder()
    if current is None:  # freed since
        return lock.acquire(holder)
    death = why_dead(current, settings)
    if death is None:
        return False
    closed = runs.abandon_runs_of_process(job_name, current.host, current.pid, runs.abandoned_by_dead_holder(death))
    if not lock.take_over(current, holder):
        return False  # another process took it over first, or the holder released it: try next time
    logger.warning("%s: took over the lock of a dead holder (%s); closed %d run(s) it left running",
                   job_name, death, closed)
    return True


class JobMutex(dramatiq.Middleware):
    """Parameters:
      settings(Settings): Where Redis is, and the key prefix.
      lock_ttl(int): The lock TTL in milliseconds of a job actor declared without ``lock_ttl``.
    """

    def __init__(self, settings: Settings, *, lock_ttl: int = DEFAULT_LOCK_TTL_MS) -> None:
        self.settings = settings
        self.lock_ttl = lock_ttl
        # (message id, the holder it took the lock as) of the message this thread runs.
        self._held = threading.local()

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
        holder = LockHolder.this_process(message.message_id)
        try:
            taken = patiently(lambda: take_job_lock(self.settings, lock, holder, name),
                              what=f"taking the lock of {name}")
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise JobNotStarted(f"{name} not started: its lock is in an unreachable Redis") from error
        except Exception as error:  # noqa: BLE001
            # e.g. PostgreSQL failed while closing a dead holder's runs: decide again later.
            defer(broker, message, job=name, what="taking the job's lock", error=error)
        if taken:
            self._held.value = (message.message_id, holder)
            if queue_one:
                self._leave_line(name, line, message)
            return
        try:
            if queue_one and line.acquire(message.message_id):
                broker.enqueue(message, delay=QUEUE_ONE_POLL_MS)
                message.options[SKIP_REASON_OPTION] = SkipReason.QUEUED
                raise SkipMessage(f"{name} is running; this run waits for it")
        except SkipMessage:
            raise
        except Exception as error:
            # Not put back in line (Redis unreachable, or refusing writes): the job must not run now.
            # The message fails, gives up its place (after_process_message), and Dramatiq retries it.
            raise JobNotStarted(f"{name} not started: it could not wait in line ({error})") from error
        message.options[SKIP_REASON_OPTION] = SkipReason.OVERLAP
        raise SkipMessage(f"{name} is already running")

    def after_process_message(self, broker, message, *, result=None, exception=None):
        self._let_go(broker, message, waiting=False)

    def after_skip_message(self, broker, message):
        # A message skipped after it took the lock (a later middleware deferred it) frees it. One put
        # back (to wait, or deferred) keeps its place in line; any other skip gives it up: it will not
        # come back, and the place would turn every other message away until the lock's TTL.
        reason = message.options.get(SKIP_REASON_OPTION)
        self._let_go(broker, message, waiting=reason in (SkipReason.QUEUED, SkipReason.DEFERRED))

    def _let_go(self, broker, message, *, waiting: bool) -> None:
        options = job_options(broker, message)
        if options is None:
            return
        name, lock, line = self._locks(options)
        held = getattr(self._held, "value", None)
        if held is not None and held[0] == message.message_id:
            self._held.value = None
            patiently(lambda: lock.release(held[1]), what=f"freeing the lock of {name}")
        if not waiting and options.get(OVERLAP_OPTION, "skip") == "queue_one":
            self._leave_line(name, line, message)

    @staticmethod
    def _leave_line(name: str, line: RedisMutex, message) -> None:
        """Give up this message's place in line, if it has it (it runs now, or will not come back)."""
        try:
            line.release(message.message_id)
        except redis.RedisError as error:  # the place expires with the lock's TTL
            logger.warning("%s: could not give up the place in line of message %s: %s", name,
                           message.message_id, error)
