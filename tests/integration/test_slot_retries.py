"""A scheduled message and its retries run until the job's next slot, and not after: a controlled clock, a real worker.

The worker is a real Dramatiq worker on crmtasks' broker and middleware,
real Redis and PostgreSQL; only the clock the schedule guard judges
staleness by is set by the test (``ScheduleGuard.clock``). The job fails
transiently on its first attempt and, as it fails, moves the clock to where
the test wants the retry judged: before the next slot, within its grace,
or past it.
"""

from __future__ import annotations

import datetime

import pytest
import redis as redis_module

from crmtasks.broker.middleware.schedule_guard import GRACE, ScheduleGuard
from crmtasks.jobs import registry
from crmtasks.models import ScheduleSlot, TaskRun
from crmtasks.redis_client import get_redis, key
from crmtasks.settings import get_settings
from tests.integration.in_process_worker import in_process_worker

UTC = datetime.timezone.utc
SLOT = datetime.datetime(2026, 3, 10, 10, 0, tzinfo=UTC)  # an hourly job's slot; the next is 11:00
NEXT_SLOT = SLOT + datetime.timedelta(hours=1)
# The clock the guard reads, and where the job moves it when its first attempt fails.
CLOCK: dict[str, datetime.datetime] = {}


def _attempts_key() -> str:
    return key(get_settings(), "test", "slot-retry-attempts")


def fail_once_then_move_the_clock() -> dict:
    attempts = get_redis().incr(_attempts_key())
    if attempts == 1:
        CLOCK["now"] = CLOCK["after_failure"]
        raise redis_module.ConnectionError("Redis went away")  # transient: retried
    return {"attempts": attempts}


SPEC = registry.JobSpec(name="hourly_flaky", actor_name="tests.hourly_flaky", cron="0 * * * *", queue="default",
                        job=f"{__name__}:fail_once_then_move_the_clock", description="hourly, fails once",
                        time_limit_s=30, max_retries=3, min_backoff_ms=10, max_backoff_ms=50)


@pytest.fixture()
def worker(crm_db):
    get_redis().delete(_attempts_key())
    with in_process_worker({SPEC.name: SPEC}) as running:
        guard = next(m for m in running.broker.middleware if isinstance(m, ScheduleGuard))
        guard.clock = lambda: CLOCK["now"]
        yield running
    CLOCK.clear()


def _history():
    runs = [(run.trigger, run.status, run.stats.get("skip_reason"))
            for run in TaskRun.select().where(TaskRun.task == SPEC.name).order_by(TaskRun.id)]
    slot = ScheduleSlot.get((ScheduleSlot.task == SPEC.name) & (ScheduleSlot.slot_at == SLOT))
    return runs, (slot.state, slot.reason)


@pytest.mark.parametrize(("retry_judged_at", "outcome"), [
    (SLOT + datetime.timedelta(minutes=41), ("retry", "succeeded", None)),
    (NEXT_SLOT + GRACE - datetime.timedelta(seconds=1), ("retry", "succeeded", None)),
    (NEXT_SLOT + GRACE + datetime.timedelta(seconds=1), ("retry", "skipped", "stale")),
], ids=["before-the-next-slot", "within-the-grace", "after-the-next-slot"])
def test_a_scheduled_message_and_its_retry_are_kept_until_the_next_slot(worker, retry_judged_at, outcome):
    CLOCK.update(now=SLOT + datetime.timedelta(minutes=40), after_failure=retry_judged_at)
    # Sent as periodiq sends it: the slot is claimed in schedule_slots, then the message goes out.
    message = worker.actors[SPEC.name].send_with_options(scheduled_at=SLOT.isoformat())
    assert message is not None
    worker.drain()
    runs, slot = _history()
    assert runs == [("schedule", "failed", None), outcome]
    assert slot == (("ran", None) if outcome[1] == "succeeded" else ("skipped", "stale"))


def test_a_message_for_a_slot_whose_next_slot_came_is_not_run_at_all(worker):
    CLOCK.update(now=NEXT_SLOT + GRACE + datetime.timedelta(seconds=1))
    worker.actors[SPEC.name].send_with_options(scheduled_at=SLOT.isoformat())
    worker.drain()
    assert _history() == ([("schedule", "skipped", "stale")], ("skipped", "stale"))
    assert get_redis().get(_attempts_key()) is None  # the job never ran
