"""A schedule changed by ``crmtasks schedule set`` is followed by a running scheduler process from its next minute.

Real processes: one ``periodiq`` scheduler with three test jobs, and the
``crmtasks`` command run as a subprocess. ``tick`` fires every minute (set
by ``CRMTASKS_SCHEDULE_TICK``): it shows the scheduler's ticks. While the
scheduler runs, the CLI stores ``* * * * *`` for ``long_haul`` (default
``0 3 * * *``) and for ``db_victim``, whose schedule the scheduler's
environment overrides: ``long_haul``'s slot for the first minute after
the change is claimed, ``db_victim`` keeps following its override, and the
CLI says which running scheduler overrides it. Takes 60 to 100 s: it
waits for periodiq to wake on a minute boundary.
"""

from __future__ import annotations

import datetime
import socket
import subprocess
import sys
import time

import pytest

from tests.acceptance.procs import (
    ROOT,
    base_env,
    free_port,
    query,
    unique_prefix,
    wait_for,
)

UTC = datetime.timezone.utc
# The CLI is run only this early in a minute, so it is done well before the next minute's tick.
LATEST_SECOND = 35


def _slots(task: str) -> list[datetime.datetime]:
    return [row[0] for row in query("SELECT slot_at FROM schedule_slots WHERE task = %s ORDER BY slot_at", (task,))]


def _cli(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.acceptance.proc_cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def _early_in_a_minute() -> None:
    now = datetime.datetime.now(UTC)
    if not 2 <= now.second <= LATEST_SECOND:
        time.sleep((62 - now.second) % 60 - now.microsecond / 1e6 + 0.1)


@pytest.mark.slow
def test_a_schedule_set_by_the_cli_is_followed_from_the_next_minute_and_an_override_still_wins(
        proc_db, processes, tmp_path):
    env = base_env(tmp_path, CRMTASKS_REDIS_PREFIX=unique_prefix("live-schedules"),
                   CRMTASKS_TEST_TASKS="tick,long_haul,db_victim", CRMTASKS_SCHEDULE_CATCHUP_S="0",
                   CRMTASKS_METRICS_PORT=free_port(), CRMTASKS_SCHEDULE_TICK="* * * * *")
    scheduler_env = dict(env, CRMTASKS_SCHEDULE_DB_VICTIM="0 3 * * *")
    scheduler = processes.scheduler("scheduler", scheduler_env)
    wait_for(lambda: _slots("tick"), timeout=60, what="the scheduler's first tick", processes=processes)

    _early_in_a_minute()
    set_at = datetime.datetime.now(UTC)
    changed = _cli(env, "schedule", "set", "long_haul", "* * * * *")
    assert changed.returncode == 0, changed.stderr
    overridden = _cli(env, "schedule", "set", "db_victim", "* * * * *")
    assert overridden.returncode == 0, overridden.stderr
    assert (f"running scheduler(s) {socket.gethostname()}:{scheduler.pid} have CRMTASKS_SCHEDULE_DB_VICTIM set"
            in overridden.stdout), overridden.stdout
    next_minute = set_at.replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
    assert datetime.datetime.now(UTC) < next_minute, "the machine was too slow to set both within the minute"

    # The first tick after the change follows it: long_haul's slot for that very minute is claimed.
    wait_for(lambda: next_minute in _slots("long_haul"), timeout=90,
             what="long_haul's slot of the first minute after the change", processes=processes)
    assert _slots("long_haul")[0] == next_minute  # nothing before, by its default 0 3 * * *
    wait_for(lambda: next_minute in _slots("tick"), timeout=30, what="tick's slot of the same minute",
             processes=processes)
    time.sleep(2)  # the same tick's sends are done
    assert _slots("db_victim") == []  # CRMTASKS_SCHEDULE_DB_VICTIM=0 3 * * * in the scheduler's environment wins
    assert scheduler.running()
    assert "long_haul: now following * * * * * (UTC) from stored" in scheduler.output()

    shown = _cli(env, "schedule", "show", "db_victim")
    assert "CRMTASKS_SCHEDULE_DB_VICTIM" in shown.stdout and f"{scheduler.pid}" in shown.stdout, shown.stdout
