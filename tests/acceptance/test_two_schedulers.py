"""Two ``periodiq`` schedulers at once (for availability) enqueue every schedule slot exactly once.

Real processes: two schedulers and a worker on an every-minute schedule
(``CRMTASKS_SCHEDULE_TICK``), then a third scheduler started within the same
minute, through one minute boundary. Takes 60 to 90 s: it has to see
periodiq wake up on a minute boundary.
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


@pytest.mark.slow
def test_two_schedulers_enqueue_each_slot_once_and_a_third_adds_nothing(proc_db, processes, tmp_path):
    env = base_env(tmp_path, CRMTASKS_REDIS_PREFIX=unique_prefix("schedulers"), CRMTASKS_TEST_TASKS="tick",
                   CRMTASKS_SCHEDULE_TICK="* * * * *", CRMTASKS_METRICS_PORT=free_port())
    processes.worker("worker", env, queues=["default"], threads=1)
    started_at = _start_early_in_a_minute()
    start_minute = _minute(started_at)
    catch_up_slot = start_minute - datetime.timedelta(minutes=1)
    first = processes.scheduler("scheduler_a", env)
    second = processes.scheduler("scheduler_b", env)

    # At start: the last minute's slot is caught up (none was ever recorded) and this minute's is sent.
    wait_for(lambda: [row[:2] for row in _slots()] == [(catch_up_slot, "ran"), (start_minute, "ran")],
             timeout=30, what="the catch-up and the current slot to run", processes=processes)

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
    assert minutes[:3] == [catch_up_slot, start_minute, next_slot]
    assert minutes == [catch_up_slot + datetime.timedelta(minutes=i) for i in range(len(minutes))]
    assert all(state == "ran" for _, state, _, _, _ in slots)
    assert [reason for _, _, reason, _, _ in slots][:2] == ["catch_up", None]
    claimed_by = {scheduler.split(":")[-1] for _, _, _, scheduler, _ in slots}
    assert claimed_by <= {str(first.pid), str(second.pid)}  # the third claimed nothing

    history = query("SELECT id, trigger, status FROM task_runs WHERE task = 'tick' ORDER BY id")
    assert [(trigger, status) for _, trigger, status in history] == [("schedule", "succeeded")] * len(slots)
    assert sorted(run_id for *_, run_id in slots) == [run_id for run_id, _, _ in history]
    assert completions("tick") == len(slots)
