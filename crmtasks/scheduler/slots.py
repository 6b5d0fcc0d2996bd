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


def plan_catch_up(cron: UtcCron, last_recorded: datetime.datetime | None, now: datetime.datetime,
                  window_s: int) -> tuple[datetime.datetime | None, list[datetime.datetime]]:
    """What a starting scheduler owes one job: (the slot to run now or None, the slots to record as missed).

    Only the latest slot before now may be caught up, once, and only when it
    is within ``window_s`` seconds; older unrecorded slots since the last
    recorded one are missed. A job never recorded has nothing missed.
    """
    # The current minute's slot is not owed: periodiq enqueues it as it starts.
    latest = cron.slot_at_or_before(to_utc_minute(now) - datetime.timedelta(minutes=1))
    if last_recorded is not None and latest <= last_recorded:
        return None, []
    run_now = latest if window_s and (now - latest).total_seconds() <= window_s else None
    if last_recorded is None:
        return run_now, []
    missed = cron.slots_between(last_recorded, latest, MAX_MISSED_RECORDED)
    if run_now is not None:
        missed = [slot for slot in missed if slot != run_now]
    return run_now, missed
