"""The middleware fail closed: a job whose checks could not be made does not run, and runs or is skipped later.

Dramatiq logs an exception raised in a ``before_process_message`` hook and
runs the message anyway. Each hook crmtasks adds is made to fail here, with
real faults from PostgreSQL where it can be (a trigger that raises, as a
lost connection would), on a real RedisBroker and an in-process worker.
The pause check itself is tested with real processes in
tests/acceptance/test_fail_closed.py.
"""

from __future__ import annotations

import datetime
import socket
import subprocess
import sys
import time

import psycopg2
import pytest

from crmtasks.broker.holders import LockHolder
from crmtasks.broker.middleware import database_connection, fail_closed, job_mutex
from crmtasks.broker.middleware.job_mutex import job_lock, waiting_slot
from crmtasks.jobs import registry
from crmtasks.models import TaskRun
from crmtasks.redis_client import get_redis, key
from crmtasks.scheduler import pauses
from crmtasks.settings import get_settings
from tests.integration.in_process_worker import in_process_worker


def count_runs() -> dict:
    return {"executions": get_redis().incr(key(get_settings(), "test", "fail-closed-executions"))}


def _spec(name: str, **overrides) -> registry.JobSpec:
    values = {"name": name, "actor_name": f"tests.{name}", "cron": "0 0 * * *", "queue": "default",
              "job": f"{__name__}:count_runs", "description": name, "time_limit_s": 30, "max_retries": 0,
              "min_backoff_ms": 10, "max_backoff_ms": 50}
    values.update(overrides)
    return registry.JobSpec(**values)


SPECS = {"guarded": _spec("guarded"), "waits": _spec("waits", overlap="queue_one")}


def _executions() -> int:
    return int(get_redis().get(key(get_settings(), "test", "fail-closed-executions")) or 0)


@pytest.fixture()
def pipeline(crm_db, redis_client, monkeypatch):
    monkeypatch.setattr(fail_closed, "DEFER_MIN_MS", 100)
    settings = get_settings()
    redis_client.delete(key(settings, "test", "fail-closed-executions"))
    with in_process_worker(SPECS, threads=1, join_timeout_ms=30_000) as running:
        yield running.actors, running.drain, running.broker


@pytest.fixture()
def failing_writes(crm_db):
    """``fail(n, on)``: the next ``n`` INSERTs (or UPDATEs) of task_runs fail inside PostgreSQL."""
    created = []

    def fail(times: int, on: str = "INSERT") -> None:
        crm_db.execute_sql("CREATE SEQUENCE IF NOT EXISTS test_task_runs_faults")
        crm_db.execute_sql(f"""
            CREATE OR REPLACE FUNCTION test_task_runs_fault() RETURNS trigger AS $$
            BEGIN
                IF nextval('test_task_runs_faults') <= {times} THEN  -- a sequence: not rolled back
                    RAISE EXCEPTION 'simulated: the server closed the connection' USING ERRCODE = '08006';
                END IF;
                RETURN NEW;
            END $$ LANGUAGE plpgsql""")
        crm_db.execute_sql(f"CREATE TRIGGER test_task_runs_fault BEFORE {on} ON task_runs "
                           "FOR EACH ROW EXECUTE FUNCTION test_task_runs_fault()")
        created.append(on)

    yield fail
    crm_db.execute_sql("DROP TRIGGER IF EXISTS test_task_runs_fault ON task_runs")
    crm_db.execute_sql("DROP FUNCTION IF EXISTS test_task_runs_fault()")
    crm_db.execute_sql("DROP SEQUENCE IF EXISTS test_task_runs_faults")


def _runs(task: str) -> list[TaskRun]:
    return list(TaskRun.select().where(TaskRun.task == task).order_by(TaskRun.id))


def test_a_run_that_cannot_be_recorded_does_not_run_until_it_can(pipeline, failing_writes):
    actors, drain, _ = pipeline
    failing_writes(2)  # the run's row cannot be written, twice
    message = actors["guarded"].send()
    drain()
    assert _executions() == 1  # not before its row could be written: never unrecorded
    [run] = _runs("guarded")
    assert (run.status, run.message_id, run.stats) == ("succeeded", message.message_id, {"executions": 1})
    assert job_lock(get_settings(), "guarded", 60_000).holder() is None  # the deferrals freed the lock


def test_the_end_of_a_run_is_recorded_through_a_database_blip(pipeline, failing_writes):
    actors, drain, _ = pipeline
    failing_writes(2, on="UPDATE")  # the run's end cannot be written, twice
    actors["guarded"].send()
    drain()
    [run] = _runs("guarded")
    assert (run.status, run.stats) == ("succeeded", {"executions": 1})  # not left "running" for ever


def test_a_job_without_a_database_connection_does_not_run_until_it_has_one(pipeline, monkeypatch):
    actors, drain, _ = pipeline
    failures = []
    real_bind = database_connection.db.bind

    class Unreachable:
        def connect(self, **kwargs):
            failures.append(1)
            raise psycopg2.OperationalError("could not connect to server: Connection refused")

    monkeypatch.setattr(database_connection.db, "bind",
                        lambda settings=None: Unreachable() if len(failures) < 2 else real_bind(settings))
    actors["guarded"].send()
    drain()
    assert len(failures) == 2
    assert _executions() == 1
    assert [run.status for run in _runs("guarded")] == ["succeeded"]


def test_a_dead_holders_lock_is_taken_over_only_once_its_runs_are_closed(pipeline, failing_writes):
    actors, drain, _ = pipeline
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = LockHolder.this_process("run-now-killed")
    dead = LockHolder(token=dead.token, host=dead.host, pid=child.pid, namespace=dead.namespace)
    lock = job_lock(get_settings(), "guarded", 60_000)
    assert lock.acquire(dead)
    now = datetime.datetime.now(datetime.timezone.utc)
    abandoned = TaskRun.create(task="guarded", trigger="manual", status="running", started_at=now, stats={},
                               host=socket.gethostname(), pid=child.pid)
    failing_writes(1, on="UPDATE")  # closing the dead holder's run fails once
    actors["guarded"].send()
    drain()
    assert _executions() == 1
    runs = _runs("guarded")
    assert [(run.id, run.status) for run in runs] == [(abandoned.id, "failed"), (runs[1].id, "succeeded")]
    assert runs[0].error == f"abandoned: the process holding the lock died (pid {child.pid} on {socket.gethostname()})"
    assert lock.holder() is None


def test_a_message_whose_slot_cannot_be_read_does_not_run(pipeline, redis_client):
    actors, drain, _ = pipeline
    actors["guarded"].send_with_options(crmtasks_slot="not a time", scheduled_at="not a time either")
    drain()
    assert _executions() == 0
    assert _runs("guarded") == []
    assert redis_client.zcard(f"{get_settings().redis_prefix}:default.XQ") == 1  # dead-lettered, not run


def test_a_waiting_message_skipped_as_paused_gives_up_its_place_in_line(pipeline, monkeypatch):
    monkeypatch.setattr(job_mutex, "QUEUE_ONE_POLL_MS", 300)
    actors, drain, _ = pipeline
    settings = get_settings()
    lock, line = job_lock(settings, "waits", 60_000), waiting_slot(settings, "waits", 60_000)
    assert lock.acquire("run-on-another-host")
    try:
        actors["waits"].send()  # waits in line for the running one
        deadline = time.monotonic() + 10
        while line.holder() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert line.holder() is not None
        pauses.pause("waits")
        drain()
        assert [(run.status, run.stats) for run in _runs("waits")] == [("skipped", {"skip_reason": "paused"})]
        assert line.holder() is None  # else every other message is turned away for the lock's TTL
    finally:
        lock.release("run-on-another-host")
        pauses.resume("waits")
