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
running anything twice. A job whose schedule is stored with a zone of its
own (``crmtasks schedule set JOB "30 2 * * *" --tz ZONE``, followed through
the process's ScheduleBook as a running scheduler does) runs once on the
zone's spring-forward night, at the first valid minute after the gap, and
once on its fall-back night, at the first pass.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os

import dramatiq
import pendulum
import periodiq
import pytest

from crmtasks.broker.actors import declare_actor
from crmtasks.broker.build import build_broker
from crmtasks.broker.middleware.schedule_guard import ScheduleGuard
from crmtasks.jobs import registry
from crmtasks.models import ScheduleSlot, TaskRun
from crmtasks.runs.trail import Operator, Via
from crmtasks.scheduler import runtime
from crmtasks.scheduler.live import LiveSchedule, ScheduleBook
from crmtasks.settings import load_settings
from tests.integration.in_process_worker import InProcessWorker, in_process_worker

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
    sent = []
    send_actors = scheduler.send_actors
    scheduler.send_actors = lambda actors, now: (sent.extend(actors), send_actors(actors, now=now))
    while clock.utc < until:
        scheduler.schedule()  # sends what is due now, then "sleeps" (moves the clock) to the next fire time
        if sent:
            worker.drain()
            sent.clear()


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


ZONED = _spec("zoned_0230", "0 4 * * *")  # its default; the test stores 02:30 in a zone of its own


@contextlib.contextmanager
def live_schedule_worker(monkeypatch, spec: registry.JobSpec):
    """A worker whose actor follows the job's schedule in force through a ScheduleBook, as running processes do."""
    monkeypatch.setattr(registry, "JOBS", (spec,))
    book = ScheduleBook(load_settings(os.environ))
    broker = build_broker(load_settings(os.environ))
    broker.emit_after("process_boot")
    actors = {spec.name: declare_actor(broker, spec, LiveSchedule(spec.name, book))}
    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=1)
    worker.start()
    try:
        yield InProcessWorker(broker, actors, worker, 20_000)
    finally:
        worker.stop()
        broker.flush_all()
        broker.close()


@pytest.mark.parametrize(("zone", "start", "runs_at"), [
    # Spring forward: 02:30 does not exist; the job runs once, at 03:00 local, the first valid minute after.
    ("Europe/Berlin", datetime.datetime(2026, 3, 28, 23, tzinfo=UTC), datetime.datetime(2026, 3, 29, 1, tzinfo=UTC)),
    ("America/New_York", datetime.datetime(2026, 3, 8, 5, tzinfo=UTC), datetime.datetime(2026, 3, 8, 7, tzinfo=UTC)),
    # Fall back: 02:30 comes twice in Berlin; the job runs once, at the first pass (02:30 CEST).
    ("Europe/Berlin", datetime.datetime(2026, 10, 24, 23, tzinfo=UTC), datetime.datetime(2026, 10, 25, 0, 30,
                                                                                         tzinfo=UTC)),
], ids=["berlin-spring", "new-york-spring", "berlin-fall"])
def test_a_job_stored_with_its_own_zone_runs_once_on_its_dst_nights(crm_db, monkeypatch, zone, start, runs_at):
    with live_schedule_worker(monkeypatch, ZONED) as worker:
        runtime.set_schedule(ZONED.name, "30 2 * * *", zone, operator=Operator(who="test", via=Via.CLI))
        clock = ControlledClock(start + datetime.timedelta(seconds=10), "UTC")  # the host itself on UTC
        run_the_night(monkeypatch, worker, clock, start + datetime.timedelta(hours=4, seconds=40))
    assert _slots(ZONED.name) == [(runs_at, "ran")]
    assert _runs(ZONED.name) == [("schedule", "succeeded")]
