"""Turning a registry entry into a Dramatiq actor: a thin declaration around the job's ``run()``."""

from __future__ import annotations

import datetime
import functools
import logging

import dramatiq
import pendulum

from crmtasks.broker import retries as transient
from crmtasks.broker import stopping
from crmtasks.broker.options import JOB_NAME_OPTION, lock_ttl_ms
from crmtasks.jobs import registry
from crmtasks.runs.status import CATCH_UP_REASON, SkipReason, SlotState
from crmtasks.scheduler import pauses, slots
from periodiq import CronSpec

from crmtasks.scheduler.cron import UtcCron, to_utc_minute

logger = logging.getLogger(__name__)

# Message options crmtasks adds: the UTC slot a scheduled message is for, and
# whether it is a catch-up of a slot missed while no scheduler ran.
SLOT_OPTION = "crmtasks_slot"
CATCH_UP_OPTION = "crmtasks_catch_up"
# Who started a manual run ("ops (dashboard)"): the worker records it in task_runs.started_by.
STARTED_BY_OPTION = "crmtasks_started_by"


class ScheduledActor(dramatiq.Actor):
    """An actor whose scheduled sends are deduplicated per slot across all schedulers.

    periodiq's scheduler sends with a ``scheduled_at`` option; here that send
    first claims the slot in ``schedule_slots`` and is dropped when another
    scheduler claimed it already, or recorded as skipped when the job is
    paused. Sends without ``scheduled_at`` (run now, retries) pass through.
    The job's name comes from the actor's ``job_name`` option.
    """

    def send_with_options(self, *, args=(), kwargs=None, delay=None, **options):
        if "scheduled_at" not in options or SLOT_OPTION in options:
            return super().send_with_options(args=args, kwargs=kwargs, delay=delay, **options)
        slot = to_utc_minute(pendulum.parse(options["scheduled_at"]))
        return send_for_slot(self, slot, args=args, kwargs=kwargs, delay=delay, **options)


def send_for_slot(actor: dramatiq.Actor, slot: datetime.datetime, *, catch_up: bool = False, **send_options):
    """Enqueue ``actor`` for ``slot`` exactly once across schedulers; None when not sent.

    A stop signal waits for the claim and the send to finish (crmtasks.broker.stopping).
    """
    with stopping.critical():
        return _claim_and_send(actor, slot, catch_up=catch_up, **send_options)


def _claim_and_send(actor: dramatiq.Actor, slot: datetime.datetime, *, catch_up: bool, **send_options):
    task = actor.options[JOB_NAME_OPTION]
    if pauses.is_paused(task):
        slots.claim_slot(task, slot, state=SlotState.SKIPPED, reason=SkipReason.PAUSED)
        logger.info("%s slot %s not enqueued: the job is paused", task, slot.isoformat())
        return None
    if not slots.claim_slot(task, slot, reason=CATCH_UP_REASON if catch_up else None):
        logger.info("%s slot %s was already enqueued by another scheduler", task, slot.isoformat())
        return None
    send_options.setdefault("scheduled_at", slot.isoformat())
    send_options[SLOT_OPTION] = slot.isoformat()
    if catch_up:
        send_options[CATCH_UP_OPTION] = True
    try:
        message = dramatiq.Actor.send_with_options(actor, **send_options)
    except BaseException:
        slots.release_slot(task, slot)
        raise
    slots.update_slot(task, slot, message_id=message.message_id)
    return message


def manual_message(actor: dramatiq.Actor, started_by: str) -> dramatiq.Message:
    """The message of one run of ``actor`` now, started by ``started_by``; not sent yet (``actor.broker.enqueue``).

    Built before it is sent so that its id can go into the operator trail
    first: a run is never started without its trail row.
    """
    return actor.message_with_options(args=(), kwargs=None, **{STARTED_BY_OPTION: started_by})


def declare_actor(broker: dramatiq.Broker, spec: registry.JobSpec, schedule: str | CronSpec) -> dramatiq.Actor:
    """Declare the actor of one job on ``broker`` (which must carry crmtasks' middleware).

    The job's policy travels as actor options (crmtasks.broker.options):
    ``job_name``, ``overlap`` and ``lock_ttl`` for crmtasks' middleware,
    beside Dramatiq's own (time limit, retries) and periodiq's schedule.

    Parameters:
      broker(Broker): The broker to bind to.
      spec(JobSpec): The job: name, queue, limits and retry policy.
      schedule(str|CronSpec): The schedule: a cron expression in UTC (fixed), or a
        ``crmtasks.scheduler.live.LiveSchedule`` that follows the schedule in force as it changes.
    """

    def perform() -> dict:
        return spec.load()()

    perform.__name__ = perform.__qualname__ = spec.name
    return dramatiq.actor(
        perform,
        actor_class=ScheduledActor,
        broker=broker,
        actor_name=spec.actor_name,
        queue_name=spec.queue,
        periodic=UtcCron(schedule) if isinstance(schedule, str) else schedule,
        time_limit=spec.time_limit_s * 1000,
        max_retries=spec.max_retries,
        min_backoff=spec.min_backoff_ms,
        max_backoff=spec.max_backoff_ms,
        retry_when=functools.partial(_retry_when, max_retries=spec.max_retries),
        # crmtasks' own options (JOB_NAME_OPTION, OVERLAP_OPTION, LOCK_TTL_OPTION), read by its middleware.
        job_name=spec.name,
        overlap=spec.overlap,
        lock_ttl=lock_ttl_ms(spec),
    )


def _retry_when(retries_so_far: int, error: BaseException, *, max_retries: int) -> bool:
    return transient.should_retry(retries_so_far, error, max_retries=max_retries)
