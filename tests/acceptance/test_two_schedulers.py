"""Two ``periodiq`` schedulers at once (for availability) enqueue every schedule slot exactly once.

Real processes: two schedulers and a worker on an every-minute schedule
(``CRMTASKS_SCHEDULE_TICK``), then a third scheduler started within the same
minute, through one minute boundary. Takes 60 to 90 s: it has to see
periodiq wake up on a minute boundary. A shorter test starts two schedulers
on a fresh database, as in issue 16, where the job ran for this minute's
slot and again, 0.2 s later, as the catch-up of the last minute's.
"""

from __future__ import annotations

import datetime
import signal
import time

import pytest

from tests.acceptance.procs import (
    base_env,
    completions,
    free_port,
    query,
    unique_prefix,
    wait_for,
)

UTC = datetime.timezone.utc
# Start only this early in a minute, so the third scheduler starts (and sends) within the same minute.
LATEST_START_SECOND = 40


def _minute(moment: datetime.datetime) -> datetime.datetime:
    return moment.replace(second=0, microsecond=0)


def _slots():
    return query("SELECT slot_at, state, reason, scheduler, run_id FROM schedule_slots WHERE task = 'tick' "
                 "ORDER BY slot_at")


def _start_early_in_a_minute() -> datetime.datetime:
    now = datetime.datetime.now(UTC)
    if now.second > LATEST_START_SECOND:
        time.sleep(60 - now.second - now.microsecond / 1e6 + 0.2)
    return datetime.datetime.now(UTC)


def _start_at_second(second: int) -> datetime.datetime:
    """Sleep until ``second`` of a minute (this one if it is still to come, else the next)."""
    now = datetime.datetime.now(UTC)
    wait = second - now.second - now.microsecond / 1e6
    time.sleep(wait if wait >= 0 else wait + 60)
    return datetime.datetime.now(UTC)


@pytest.mark.slow
def test_schedulers_starting_on_a_fresh_database_run_the_job_once(proc_db, processes, tmp_path):
    env = base_env(tmp_path, CRMTASKS_REDIS_PREFIX=unique_prefix("fresh"), CRMTASKS_TEST_TASKS="tick",
                   CRMTASKS_SCHEDULE_TICK="* * * * *", CRMTASKS_METRICS_PORT=free_port())
    processes.worker("worker", env, queues=["default"], threads=1)
    start_minute = _minute(_start_at_second(9))  # 20:22:09 in the issue
    processes.scheduler("scheduler_a", env)
    processes.scheduler("scheduler_b", env)

    wait_for(lambda: (start_minute, "ran") in [row[:2] for row in _slots()], timeout=30,
             what="this minute's slot to run", processes=processes)
    time.sleep(3)  # the catch-up of the last minute ran 0.2 s after this minute's slot
    slots = [row for row in _slots() if row[0] <= start_minute]
    assert [(slot_at, state, reason) for slot_at, state, reason, _, _ in slots] == [(start_minute, "ran", None)]
    history = query("SELECT r.trigger, r.status FROM task_runs r JOIN schedule_slots s ON s.run_id = r.id "
                    "WHERE s.task = 'tick' AND s.slot_at <= %s", (start_minute,))
    assert history == [("schedule", "succeeded")]
    # Nothing ran outside a slot, and no minute ran twice.
    assert query("SELECT count(*) FROM task_runs WHERE task = 'tick'")[0][0] == len(_slots())
    assert completions("tick") == len(_slots())


@pytest.mark.slow
def test_two_schedulers_enqueue_each_slot_once_and_a_third_adds_nothing(proc_db, processes, tmp_path):
    env = base_env(tmp_path, CRMTASKS_REDIS_PREFIX=unique_prefix("schedulers"), CRMTASKS_TEST_TASKS="tick",
                   CRMTASKS_SCHEDULE_TICK="* * * * *", CRMTASKS_METRICS_PORT=free_port())
    processes.worker("worker", env, queues=["default"], threads=1)
    started_at = _start_early_in_a_minute()
    start_minute = _minute(started_at)
    first = processes.scheduler("scheduler_a", env)
    second = processes.scheduler("scheduler_b", env)

    # At start: this minute's slot is sent, and it is the latest: nothing older is caught up.
    wait_for(lambda: [row[:2] for row in _slots()] == [(start_minute, "ran")],
             timeout=30, what="the current slot to run", processes=processes)

    third = processes.scheduler("scheduler_c", env)
    # It owes no catch-up (this minute's slot is recorded) and finds this minute's slot taken.
    already = f"tick slot {start_minute.isoformat()} was already enqueued by another scheduler"
    wait_for(lambda: already in third.output(), timeout=15, what="the third scheduler to try this minute's slot",
             processes=processes)
    assert _minute(datetime.datetime.now(UTC)) == start_minute, "the machine was too slow to start within a minute"
    third.signal_group(signal.SIGTERM)
    third.wait(timeout=10)

    next_slot = start_minute + datetime.timedelta(minutes=1)
    wait_for(lambda: [row[:2] for row in _slots()][-1:] == [(next_slot, "ran")], timeout=75,
             what="the next minute's slot to run", processes=processes)
    for scheduler in (first, second):
        scheduler.signal_group(signal.SIGTERM)
        scheduler.wait(timeout=10)
    time.sleep(1)  # a message sent just before the stop would be running now

    slots = _slots()
    minutes = [row[0] for row in slots]
    assert minutes[:2] == [start_minute, next_slot]
    assert minutes == [start_minute + datetime.timedelta(minutes=i) for i in range(len(minutes))]
    assert all(state == "ran" for _, state, _, _, _ in slots)
    assert all(reason is None for _, _, reason, _, _ in slots)
    claimed_by = {scheduler.split(":")[-1] for _, _, _, scheduler, _ in slots}
    assert claimed_by <= {str(first.pid), str(second.pid)}  # the third claimed nothing

    history = query("SELECT id, trigger, status FROM task_runs WHERE task = 'tick' ORDER BY id")
    assert [(trigger, status) for _, trigger, status in history] == [("schedule", "succeeded")] * len(slots)
    assert sorted(run_id for *_, run_id in slots) == [run_id for run_id, _, _ in history]
    assert completions("tick") == len(slots)
