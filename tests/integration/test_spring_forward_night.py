"""The scheduler through a spring-forward night, end to end, with a controlled clock.

periodiq's own scheduler loop (``periodiq.Scheduler.schedule``) drives the
jobs as in production; only its clock is the test's: ``pendulum.now()``
answers the controlled time in the host's zone, and its ``sleep`` and
``alarm`` move that clock forward instead of waiting. Every slot sent is
run at once by a real Dramatiq worker (crmtasks' broker and middleware,
real Redis and PostgreSQL) whose schedule guard reads the same clock.

The host's zone here springs forward during the night. Jobs on the
default UTC schedules must fire at each of their UTC slots exactly once,
neither skipping the slot that falls in the host's missing hour nor
running anything twice.
"""

from __future__ import annotations

import dataclasses
import datetime

import pendulum
import periodiq
import pytest

from crmtasks.broker.middleware.schedule_guard import ScheduleGuard
from crmtasks.jobs import registry
from crmtasks.models import ScheduleSlot, TaskRun
from tests.integration.in_process_worker import in_process_worker

UTC = datetime.timezone.utc


def nothing() -> dict:
    return {"ok": True}


def _spec(name: str, cron: str) -> registry.JobSpec:
    return registry.JobSpec(name=name, actor_name=f"tests.{name}", cron=cron, queue="default",
                            job=f"{__name__}:nothing", description=name, time_limit_s=30)


HOURLY = _spec("night_hourly", "0 * * * *")
AT_0130_UTC = _spec("night_0130", "30 1 * * *")  # 01:30 UTC: inside Berlin's skipped hour's neighbourhood
AT_0700_UTC = _spec("night_0700", "0 7 * * *")  # 07:00 UTC: the very minute New York springs forward
SPECS = {spec.name: spec for spec in (HOURLY, AT_0130_UTC, AT_0700_UTC)}


@dataclasses.dataclass
class ControlledClock:
    """The present as the test sets it, read in the host's zone as ``pendulum.now()`` would be."""

    utc: datetime.datetime
    zone: str

    def now(self, tz=None) -> pendulum.DateTime:
        return pendulum.instance(self.utc).in_timezone(tz or self.zone)

    def advance(self, seconds: float) -> None:
        self.utc += datetime.timedelta(seconds=seconds)


def run_the_night(monkeypatch, worker, clock: ControlledClock, until: datetime.datetime) -> None:
    """periodiq's scheduler loop from the clock's time to ``until``, each message run by the worker as it is sent."""
    monkeypatch.setattr(periodiq.pendulum, "now", clock.now)
    monkeypatch.setattr(periodiq, "sleep", clock.advance)
    monkeypatch.setattr(periodiq, "alarm", clock.advance)
    monkeypatch.setattr(periodiq, "signal", lambda *args: None)
    guard = next(m for m in worker.broker.middleware if isinstance(m, ScheduleGuard))
    guard.clock = lambda: clock.utc
    scheduler = periodiq.Scheduler(list(worker.actors.values()))
    while clock.utc < until:
        scheduler.schedule()  # sends what is due now, then "sleeps" (moves the clock) to the next fire time
        worker.drain()


def _slots(task: str) -> list[tuple]:
    return [(slot.slot_at.astimezone(UTC), slot.state) for slot in
            ScheduleSlot.select().where(ScheduleSlot.task == task).order_by(ScheduleSlot.slot_at)]


def _runs(task: str) -> list[tuple]:
    return [(run.trigger, run.status) for run in TaskRun.select().where(TaskRun.task == task)]


@pytest.fixture()
def worker(crm_db):
    with in_process_worker(SPECS) as running:
        yield running


@pytest.mark.parametrize(("zone", "night"), [
    ("Europe/Berlin", datetime.datetime(2026, 3, 29, tzinfo=UTC)),  # 02:00 CET -> 03:00 CEST at 01:00 UTC
    ("America/New_York", datetime.datetime(2026, 3, 8, 4, tzinfo=UTC)),  # 02:00 EST -> 03:00 EDT at 07:00 UTC
])
def test_utc_schedules_fire_once_per_slot_through_the_hosts_spring_forward(monkeypatch, worker, zone, night):
    start, end = night + datetime.timedelta(seconds=10), night + datetime.timedelta(hours=8, seconds=40)
    clock = ControlledClock(start, zone)
    assert clock.now().utcoffset() != pendulum.instance(end).in_timezone(zone).utcoffset()  # the zone springs
    run_the_night(monkeypatch, worker, clock, end)

    hours = [night + datetime.timedelta(hours=h) for h in range(9)]
    assert _slots(HOURLY.name) == [(hour, "ran") for hour in hours]
    assert _runs(HOURLY.name) == [("schedule", "succeeded")] * 9
    for spec, minute in ((AT_0130_UTC, datetime.time(1, 30)), (AT_0700_UTC, datetime.time(7, 0))):
        slot = datetime.datetime.combine(night.date(), minute, tzinfo=UTC)
        expected = [(slot, "ran")] if start <= slot < end else []
        assert _slots(spec.name) == expected, spec.name
        assert _runs(spec.name) == [("schedule", "succeeded")] * len(expected)
