"""Test jobs for the real-process acceptance tests, and the registry they run under.

The jobs write what they did to ``proc_completions`` (a table the tests
create), so a test can count completions across worker crashes, Redis
restarts and retries. ``CRMTASKS_TEST_TASKS`` (comma-separated names) picks
which of them a process registers; every process of one test must pick the
same ones, as schedules and health checks follow the registry.
"""

from __future__ import annotations

import os
import time

from crmtasks.jobs import registry
from crmtasks.pg.db import database
from crmtasks.redis_client import get_redis, key
from crmtasks.settings import get_settings

# Seconds long_haul works: long enough to kill, restart or stop things around it.
LONG_HAUL_S = 6
# Seconds long_haul may go on past LONG_HAUL_S while a test holds it (see long_haul_held).
LONG_HAUL_HOLD_CAP_S = 120
# Seconds db_victim's statement sleeps inside PostgreSQL.
DB_VICTIM_S = 3
# Seconds overrun would work, were its 1 s time limit not to stop it.
OVERRUN_S = 20

COMPLETIONS_DDL = """
CREATE TABLE IF NOT EXISTS proc_completions (
    id serial PRIMARY KEY,
    task text NOT NULL,
    pid integer NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


def tick_fails_key() -> str:
    """Redis key that, while set, makes ``tick`` fail as a bug would (not retried)."""
    return key(get_settings(), "test", "tick_fails")


def long_haul_held() -> bool:
    """Whether a test holds ``long_haul`` past LONG_HAUL_S: the file ``CRMTASKS_TEST_LONG_HAUL_HOLD`` names exists.

    A test that must act while a run is still going creates it, so a slow
    machine (a new process can take seconds to start under load) cannot let
    the run end first. A file, not a Redis key: tests stop Redis mid-run.
    """
    hold = os.environ.get("CRMTASKS_TEST_LONG_HAUL_HOLD")
    return bool(hold) and os.path.exists(hold)


def _complete(task: str) -> int:
    with database.atomic():
        database.execute_sql("INSERT INTO proc_completions (task, pid) VALUES (%s, %s)", (task, os.getpid()))
    return database.execute_sql("SELECT count(*) FROM proc_completions WHERE task = %s", (task,)).fetchone()[0]


def tick() -> dict:
    if get_redis().exists(tick_fails_key()):
        raise ValueError("tick was told to fail")
    return {"completions": _complete("tick")}


def long_haul() -> dict:
    started = time.monotonic()
    while True:
        elapsed = time.monotonic() - started
        held = elapsed < LONG_HAUL_HOLD_CAP_S and long_haul_held()
        if elapsed >= LONG_HAUL_S and not held:
            break
        time.sleep(0.2)
    return {"completions": _complete("long_haul")}


def db_victim() -> dict:
    database.execute_sql("SELECT pg_sleep(%s)", (DB_VICTIM_S,))
    return {"completions": _complete("db_victim")}


def overrun() -> dict:
    """Works far past its 1 s time limit (in short sleeps, which the time limit interrupts)."""
    started = time.monotonic()
    while time.monotonic() - started < OVERRUN_S:
        time.sleep(0.1)
    return {"completions": _complete("overrun")}


def _spec(name: str, **overrides) -> registry.JobSpec:
    values = dict(name=name, actor_name=f"tests.{name}", cron="0 3 * * *", queue="default",
                  job=f"{__name__}:{name}", description=f"test job {name}", time_limit_s=60, max_retries=3,
                  min_backoff_ms=200, max_backoff_ms=1000)
    values.update(overrides)
    return registry.JobSpec(**values)


ALL_SPECS = (
    _spec("tick", cron="* * * * *"),
    _spec("long_haul", queue="workflow_io"),
    _spec("db_victim", queue="workflow_io"),
    _spec("overrun", time_limit_s=1),
)


def selected_specs() -> tuple[registry.JobSpec, ...]:
    wanted = [name for name in os.environ.get("CRMTASKS_TEST_TASKS", "").split(",") if name]
    if not wanted:
        return ALL_SPECS
    return tuple(spec for spec in ALL_SPECS if spec.name in wanted)


def install() -> None:
    """Make the selected test jobs the registry of this process (before settings are read)."""
    registry.JOBS = selected_specs()
