"""Slots a scheduler claimed but never sent: found by the next scheduler to start, then sent or closed.

A scheduler claims a slot in ``schedule_slots`` (state ``enqueued``) and
then sends its message to Redis. Killed between the two (kill -9, a lost
host), it leaves a slot that says ``enqueued`` although no message exists:
no worker will ever run it or mark it, and the catch-up counts it as done.

A starting scheduler looks for such slots before its catch-up: ``enqueued``,
no run linked, not touched for ``STRANDED_AFTER_S`` (a claim is followed by
its send within milliseconds), and no message for that job and slot
anywhere in Redis (the job's queue, its delay queue, its dead letters; a
message being worked on is still in the queue until it is acknowledged,
and a message that started has linked its run). A slot that is still
current (its next slot has not come, or within its catch-up window) is
sent again; an older one is closed as skipped (``missed``). Either step
first takes the slot over in one conditional UPDATE, so when schedulers
start together only one acts on it, and a scheduler killed in the middle
of a re-send leaves a slot the next one finds again.
"""

from __future__ import annotations

import datetime
import json
import logging

import dramatiq

from crmtasks.broker.actors import CATCH_UP_OPTION, SLOT_OPTION
from crmtasks.broker.middleware.schedule_guard import GRACE
from crmtasks.broker.options import JOB_NAME_OPTION
from crmtasks.models import ScheduleSlot
from crmtasks.pg import db
from crmtasks.pg.db import database
from crmtasks.runs.status import CATCH_UP_REASON, SkipReason, SlotState
from crmtasks.scheduler import slots
from crmtasks.settings import Settings

logger = logging.getLogger(__name__)
UTC = datetime.timezone.utc
# Seconds a claimed slot may go untouched before a starting scheduler looks whether its message exists.
STRANDED_AFTER_S = 120
# Slots looked at per start, at most (oldest first).
MOST_LOOKED_AT = 500


def settle_stranded(settings: Settings, actors: dict[str, dramatiq.Actor],
                    now: datetime.datetime | None = None) -> dict[str, list[str]]:
    """Send again, or close as missed, the slots claimed and never sent; returns the slots per outcome.

    Parameters:
      settings(Settings): The catch-up window (a stranded catch-up slot is current within it).
      actors(dict[str, Actor]): The jobs' actors by job name (their broker is searched for the messages).
      now(datetime|None): The present the schedules are judged by (tests pass their own); how long a slot
        went untouched is judged by the system clock, which wrote its row.
    """
    wall = datetime.datetime.now(UTC)
    now = now or wall
    by_task = {actor.options[JOB_NAME_OPTION]: actor for actor in actors.values()}
    done: dict[str, list[str]] = {"sent": [], "missed": [], "present": []}
    for row in _candidates(wall, list(by_task)):
        actor = by_task[row.task]
        slot = row.slot_at.astimezone(UTC)
        label = f"{row.task} {slot.isoformat()}"
        if _message_exists(actor, slot):
            done["present"].append(label)
            continue
        catch_up = row.reason == CATCH_UP_REASON
        if catch_up:
            current = now <= slot + datetime.timedelta(seconds=settings.catch_up_s) + GRACE
        else:
            current = now <= actor.options["periodic"].next_slot(slot) + GRACE
        if not _take_over(row, wall, missed=not current):
            continue  # another scheduler acted on it first
        if current:
            _send(actor, row.task, slot, catch_up)
            done["sent"].append(label)
        else:
            done["missed"].append(label)
        logger.warning("%s: slot %s was claimed but never sent (its scheduler stopped between the two); %s",
                       row.task, slot.isoformat(), "sent now" if current else "closed as missed")
    return done


def _candidates(now: datetime.datetime, tasks: list[str]) -> list[ScheduleSlot]:
    quiet_since = now - datetime.timedelta(seconds=STRANDED_AFTER_S)
    with db.connection():
        return list(ScheduleSlot.select()
                    .where((ScheduleSlot.task.in_(tasks)) & (ScheduleSlot.state == SlotState.ENQUEUED)
                           & (ScheduleSlot.run.is_null()) & (ScheduleSlot.updated_at < quiet_since))
                    .order_by(ScheduleSlot.slot_at).limit(MOST_LOOKED_AT))


def _message_exists(actor: dramatiq.Actor, slot: datetime.datetime) -> bool:
    """Whether Redis holds a message of ``actor`` for ``slot`` (waiting, delayed, being worked on or dead)."""
    broker = actor.broker
    wanted = slot.isoformat()
    for queue in (actor.queue_name, f"{actor.queue_name}.DQ", f"{actor.queue_name}.XQ"):
        for _, raw in broker.client.hscan_iter(f"{broker.namespace}:{queue}.msgs", count=500):
            message = json.loads(raw)
            if message.get("actor_name") == actor.actor_name and message.get("options", {}).get(SLOT_OPTION) == wanted:
                return True
    return False


def _take_over(row: ScheduleSlot, now: datetime.datetime, *, missed: bool) -> bool:
    """Make the slot this scheduler's (or close it as missed) if nobody touched it since it was read."""
    values = {ScheduleSlot.updated_at: now, ScheduleSlot.scheduler: slots.scheduler_id()}
    if missed:
        values.update({ScheduleSlot.state: SlotState.SKIPPED, ScheduleSlot.reason: SkipReason.MISSED})
    with db.connection(), database.atomic():
        return bool(ScheduleSlot.update(values)
                    .where((ScheduleSlot.task == row.task) & (ScheduleSlot.slot_at == row.slot_at)
                           & (ScheduleSlot.state == SlotState.ENQUEUED) & (ScheduleSlot.run.is_null())
                           & (ScheduleSlot.updated_at == row.updated_at))
                    .execute())


def _send(actor: dramatiq.Actor, task: str, slot: datetime.datetime, catch_up: bool) -> None:
    options = {"scheduled_at": slot.isoformat(), SLOT_OPTION: slot.isoformat()}
    if catch_up:
        options[CATCH_UP_OPTION] = True
    message = dramatiq.Actor.send_with_options(actor, **options)
    slots.update_slot(task, slot, message_id=message.message_id)
