"""Building what a crmtasks process sends and runs jobs with: the broker and one actor per job.

Every process that needs them calls ``build_runtime``: the worker and
scheduler module (crmtasks.tasks), ``crmtasks run --enqueue`` and the
dashboard. It only builds: making the broker Dramatiq's global one,
setting up logging and starting the scheduler are left to crmtasks.tasks,
the one module whose import does things, so importing the CLI or the
dashboard never does.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping

import dramatiq

from crmtasks.broker.actors import declare_actor
from crmtasks.broker.build import build_broker
from crmtasks.jobs import registry
from crmtasks.scheduler.live import LiveSchedule, ScheduleBook
from crmtasks.settings import Settings


@dataclasses.dataclass(frozen=True)
class Runtime:
    """A broker and the job actors declared on it, as ``build_runtime`` returns them.

    Parameters:
      broker(RedisBroker): The broker, with every middleware crmtasks needs (crmtasks.broker.build).
      actors(Mapping[str, Actor]): One actor per job, by the job's CLI name, in registry order (read-only).
      schedules(ScheduleBook): The schedules in force the actors follow, re-read from the database
        (crmtasks.scheduler.live).
    """

    broker: dramatiq.Broker
    actors: Mapping[str, dramatiq.Actor]
    schedules: ScheduleBook | None = None


def build_runtime(settings: Settings) -> Runtime:
    """Build the broker for ``settings`` and declare on it one actor per registered job, on its schedule in force.

    The actors' schedules are read from the database when first used and
    re-read as they change (crmtasks.scheduler.live), never at build time.

    Each call builds a new broker with its own Redis connections, so a
    process calls it once. The jobs are ``registry.JOBS`` as it is at the
    call (tests register theirs before).

    Parameters:
      settings(Settings): Where Redis is, the key prefix, the metrics exporter and the schedules in force.
    """
    broker = build_broker(settings)
    book = ScheduleBook(settings)
    actors = {spec.name: declare_actor(broker, spec, LiveSchedule(spec.name, book)) for spec in registry.JOBS}
    return Runtime(broker=broker, actors=types.MappingProxyType(actors), schedules=book)
