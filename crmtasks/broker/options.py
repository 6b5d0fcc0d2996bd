"""The actor options that carry a job's policy to crmtasks' middleware.

This is Dramatiq's own mechanism (see its TimeLimit and Retries
middleware): each middleware names the options it reads in
``actor_options`` (the broker refuses any other option when an actor is
declared), ``crmtasks.broker.actors.declare_actor`` sets them from the
job's registry entry, and the middleware read them back from
``broker.get_actor(message.actor_name).options``. So a middleware acts on
what the actor was declared with, on its own broker, rather than on a
global registry it would have to look the message up in.

An actor declared without ``job_name`` is not one of crmtasks' jobs: the
middleware let its messages pass untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dramatiq
from dramatiq.errors import ActorNotFound

from crmtasks.jobs import registry

#: The job's CLI name (``precompute_facets``): its runs, lock, slots and metrics are filed under it.
JOB_NAME_OPTION = "job_name"
#: What a run that finds the job already running does: ``skip`` or ``queue_one`` (see JobSpec.overlap).
OVERLAP_OPTION = "overlap"
#: The time in milliseconds the job's lock lives unreleased: how long a holder that cannot be proved dead
#: (another host, no heartbeat) can block the job; a dead one is taken over at once (crmtasks.broker.holders).
LOCK_TTL_OPTION = "lock_ttl"

# Seconds a job's lock outlives its time limit, so it never expires under a
# run that is still within its limit.
LOCK_MARGIN_S = 60


def lock_ttl_ms(spec: registry.JobSpec) -> int:
    """The time in milliseconds the lock of ``spec``'s job lives: its time limit plus LOCK_MARGIN_S.

    Parameters:
      spec(JobSpec): The job, for its time limit in seconds.
    """
    return (spec.time_limit_s + LOCK_MARGIN_S) * 1000


def job_options(broker: dramatiq.Broker, message: dramatiq.Message) -> Mapping[str, Any] | None:
    """The options of the actor ``message`` is for when it is one of crmtasks' jobs, else None.

    Why None rather than an error: middleware see every message of the
    broker, and messages of other actors (or of an actor this process never
    declared) are not theirs to act on.

    Parameters:
      broker(Broker): The broker the actor is declared on.
      message(Message): The message being processed or skipped.
    """
    try:
        options = broker.get_actor(message.actor_name).options
    except ActorNotFound:
        return None
    return options if JOB_NAME_OPTION in options else None
