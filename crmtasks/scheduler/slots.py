"""Schedule slots: what makes two schedulers safe.

A slot is (job, UTC minute). The scheduler that enqueues a slot first
claims it with ``INSERT ... ON CONFLICT DO NOTHING`` on the primary key, so
any number of schedulers running at once enqueue each slot exactly once,
and a scheduler restarted within a minute does not enqueue it again. The
worker then records whether the slot ran or was skipped, and why.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
from typing import NamedTuple

from crmtasks.models import ScheduleSlot
from crmtasks.pg import db
from crmtasks.pg.db import database
from crmtasks.runs.status import SkipReason, SlotState
from crmtasks.scheduler.cron import UtcCron, to_utc_minute

logger = logging.getLogger(__name__)
UTC = datetime.timezone.utc
# Slots a scheduler records as missed for one job after an outage, at most.
MAX_MISSED_RECORDED = 500


def _now() -> datetime.datetime:
    return datetime.datetime.now(UTC)


def scheduler_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim_slot(task: str, slot_at: datetime.datetime, *, state: SlotState = SlotState.ENQUEUED,
               reason: str | None = None) -> bool:
    """Record the slot if nobody has yet; True when this call recorded it."""
    with db.connection(), database.atomic():
        inserted = (ScheduleSlot.insert(task=task, slot_at=slot_at, state=state, reason=reason,
                                        scheduler=scheduler_id(), created_at=_now(), updated_at=_now())
                    .on_conflict_ignore().as_rowcount().execute())
    return bool(inserted)


def release_slot(task: str, slot_at: datetime.datetime) -> None:
    """Forget a claim whose message could not be sent, so the slot can be claimed again."""
    with db.connection(), database.atomic():
        ScheduleSlot.delete().where((ScheduleSlot.task == task) & (ScheduleSlot.slot_at == slot_at)
                                    & (ScheduleSlot.state == SlotState.ENQUEUED)).execute()


def update_slot(task: str, slot_at: datetime.datetime, *, state: SlotState | None = None, reason: str | None = None,
                message_id: str | None = None, run_id: int | None = None) -> None:
    """Record what happened to a slot (the worker's side)."""
    values = {ScheduleSlot.updated_at: _now()}
    if state is not None:
        values[ScheduleSlot.state] = state
    if reason is not None:  # a caught-up slot that ran keeps its catch_up reason
        values[ScheduleSlot.reason] = reason
    if message_id is not None:
        values[ScheduleSlot.message_id] = message_id
    if run_id is not None:
        values[ScheduleSlot.run] = run_id
    with db.connection(), database.atomic():
        ScheduleSlot.update(values).where((ScheduleSlot.task == task) & (ScheduleSlot.slot_at == slot_at)).execute()


def latest_slot(task: str) -> datetime.datetime | None:
    with db.connection():
        row = (ScheduleSlot.select(ScheduleSlot.slot_at).where(ScheduleSlot.task == task)
               .order_by(ScheduleSlot.slot_at.desc()).first())
    return row.slot_at if row else None


def record_missed(task: str, slots: list[datetime.datetime]) -> int:
    """Record slots nobody enqueued (the scheduler was down) as skipped/missed; returns how many were new."""
    if not slots:
        return 0
    now = _now()
    rows = [{"task": task, "slot_at": slot, "state": SlotState.SKIPPED, "reason": SkipReason.MISSED,
             "scheduler": scheduler_id(), "created_at": now, "updated_at": now} for slot in slots]
    with db.connection(), database.atomic():
        cursor = ScheduleSlot.insert_many(rows).on_conflict_ignore().as_rowcount().execute()
    return cursor


class CatchUpPlan(NamedTuple):
    """What a starting scheduler owes one job.

    Members:
      catch_up(datetime|None): A slot that passed while no scheduler ran, to run once now (a catch-up).
      missed(list[datetime]): Older slots nobody enqueued, to record as skipped (missed).
      current(datetime|None): This minute's slot, when the schedule fires now: it is sent now, as usual.
    """

    catch_up: datetime.datetime | None
    missed: list[datetime.datetime]
    current: datetime.datetime | None


def plan_catch_up(cron: UtcCron, last_recorded: datetime.datetime | None, now: datetime.datetime,
                  window_s: int) -> CatchUpPlan:
    """What a starting scheduler owes one job (see CatchUpPlan).

    Only the latest slot up to now runs, once. When the schedule fires in
    the current minute, that slot is the latest: it is sent now and no older
    slot is caught up (else a scheduler starting at 10:05:09 would run an
    every-minute job for 10:05 and again for 10:04). Otherwise the latest
    slot before now is caught up when it is within ``window_s`` seconds.
    Unrecorded slots since the last recorded one, other than the one run,
    are missed; a job never recorded has nothing missed.
    """
    minute = to_utc_minute(now)
    current = minute if cron.validate(minute) else None
    latest = current or cron.slot_at_or_before(minute - datetime.timedelta(minutes=1))
    if last_recorded is not None and latest <= last_recorded:
        return CatchUpPlan(None, [], None)
    catch_up = None
    if current is None and window_s and (now - latest).total_seconds() <= window_s:
        catch_up = latest
    if last_recorded is None:
        return CatchUpPlan(catch_up, [], current)
    missed = [slot for slot in cron.slots_between(last_recorded, latest, MAX_MISSED_RECORDED)
              if slot not in (catch_up, current)]
    return CatchUpPlan(catch_up, missed, current)
