"""Turning a registry entry into a Dramatiq actor: a thin declaration around the job's ``run()``."""

from __future__ import annotations

import functools

import dramatiq
from periodiq import cron

from crmtasks import registry, transient


def declare_actor(broker: dramatiq.Broker, spec: registry.TaskSpec, schedule: str) -> dramatiq.Actor:
    """Declare the actor of one job on ``broker`` (which must carry periodiq's middleware).

    Parameters:
      broker(Broker): The broker to bind to.
      spec(TaskSpec): The job: name, queue, limits and retry policy.
      schedule(str): The cron expression in force (the default or the user's override).
    """

    def perform() -> dict:
        return spec.load()()

    perform.__name__ = perform.__qualname__ = spec.name
    return dramatiq.actor(
        perform,
        broker=broker,
        actor_name=spec.actor_name,
        queue_name=spec.queue,
        periodic=cron(schedule),
        time_limit=spec.time_limit_s * 1000,
        max_retries=spec.max_retries,
        min_backoff=spec.min_backoff_ms,
        max_backoff=spec.max_backoff_ms,
        retry_when=functools.partial(_retry_when, max_retries=spec.max_retries),
    )


def _retry_when(retries_so_far: int, error: BaseException, *, max_retries: int) -> bool:
    return transient.should_retry(retries_so_far, error, max_retries=max_retries)
