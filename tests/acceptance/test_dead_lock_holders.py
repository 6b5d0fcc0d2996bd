"""A job's lock held by a process that was killed is taken over at once, and its run closed as failed.

Issue 16, item 1: ``python -m crmtasks.run --task precompute_aggregates``
killed with SIGKILL left its ``task_runs`` row ``running`` for ever, and its
Redis lock blocked the job for the lock's TTL (360 s): every rerun in that
window exited 0 as ``skipped (overlap)``. Real processes here: a manual run
(``python -m crmtasks.run`` with the test jobs registered) or a worker is
killed with SIGKILL mid-run, and the next run starts at once.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import redis

from tests.acceptance.proc_jobs import LONG_HAUL_S
from tests.acceptance.procs import (
    ROOT,
    base_env,
    completions,
    enqueue,
    free_port,
    runs,
    unique_prefix,
    wait_for,
)

pytestmark = pytest.mark.slow
RUN = [sys.executable, "-m", "tests.acceptance.proc_run"]


def _running(task: str) -> list[tuple]:
    return [run for run in runs(task) if run[1] == "running"]


def _lock_holder(prefix: str, task: str) -> dict | None:
    value = redis.Redis.from_url(os.environ["REDIS_URL"]).get(f"{prefix}:lock:{task}")
    return json.loads(value) if value is not None else None


def _run_now(env: dict[str, str], task: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run([*RUN, "--task", task, "--json"], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=120, check=False)
    return result, time.monotonic() - started


def test_a_killed_manual_run_is_closed_and_its_lock_taken_over_by_the_rerun(proc_db, processes, tmp_path):
    prefix = unique_prefix("killed-run")
    env = base_env(tmp_path, CRMTASKS_REDIS_PREFIX=prefix, CRMTASKS_TEST_TASKS="long_haul")
    first = processes.start("first_run", [*RUN, "--task", "long_haul"], env)
    wait_for(lambda: _running("long_haul"), timeout=30, what="the first run to start", processes=processes)
    holder = _lock_holder(prefix, "long_haul")
    assert (holder["host"], holder["pid"]) == (socket.gethostname(), first.pid)  # the lock names its process

    first.signal_group(signal.SIGKILL)
    first.wait(timeout=10)
    result, took = _run_now(env, "long_haul")

    assert result.returncode == 0, result.stderr
    [outcome] = json.loads(result.stdout)
    assert outcome["status"] == "succeeded"  # run at once, not skipped (overlap) for the lock's TTL
    assert took < LONG_HAUL_S + 30
    assert completions("long_haul") == 1
    history = runs("long_haul")
    assert [(trigger, status) for trigger, status, _, _ in history] == [("manual", "failed"), ("manual", "succeeded")]
    assert history[0][3] == f"abandoned: the process holding the lock died (pid {first.pid} on {socket.gethostname()})"
    assert _lock_holder(prefix, "long_haul") is None


def test_a_killed_manual_run_whose_lock_expired_is_closed_by_the_next_run(proc_db, processes, tmp_path):
    """No lock left to take over: the next run still closes the run whose process is gone."""
    prefix = unique_prefix("expired-run")
    env = base_env(tmp_path, CRMTASKS_REDIS_PREFIX=prefix, CRMTASKS_TEST_TASKS="long_haul")
    first = processes.start("first_run", [*RUN, "--task", "long_haul"], env)
    wait_for(lambda: _running("long_haul"), timeout=30, what="the first run to start", processes=processes)
    first.signal_group(signal.SIGKILL)
    first.wait(timeout=10)
    redis.Redis.from_url(os.environ["REDIS_URL"]).delete(f"{prefix}:lock:long_haul")  # as when its TTL ends

    result, _ = _run_now(env, "long_haul")
    assert result.returncode == 0, result.stderr
    history = runs("long_haul")
    assert [status for _, status, _, _ in history] == ["failed", "succeeded"]
    assert history[0][3] == f"abandoned: the process holding the lock died (pid {first.pid} on {socket.gethostname()})"


def test_a_killed_workers_lock_is_taken_over_by_a_manual_run(proc_db, processes, tmp_path):
    prefix = unique_prefix("killed-worker")
    env = base_env(tmp_path, CRMTASKS_REDIS_PREFIX=prefix, CRMTASKS_TEST_TASKS="long_haul",
                   CRMTASKS_METRICS_PORT=free_port())
    worker = processes.worker("worker", env, queues=["workflow_io"])
    message_id = enqueue("tests.long_haul", "workflow_io", redis_url=os.environ["REDIS_URL"], prefix=prefix)
    wait_for(lambda: _running("long_haul"), timeout=30, what="the worker to start long_haul", processes=processes)
    holder = _lock_holder(prefix, "long_haul")
    assert (holder["token"], holder["heartbeat"]) == (message_id, "worker")
    worker_pid = holder["pid"]

    worker.signal_group(signal.SIGKILL)
    worker.wait(timeout=10)
    result, _ = _run_now(env, "long_haul")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["status"] == "succeeded"
    history = runs("long_haul")
    assert [(trigger, status, message) for trigger, status, message, _ in history] == [
        ("manual", "failed", message_id), ("manual", "succeeded", None)]
    assert history[0][3] == f"abandoned: the process holding the lock died (pid {worker_pid} on {socket.gethostname()})"


def test_a_live_holder_is_respected(proc_db, processes, tmp_path):
    prefix = unique_prefix("live-run")
    hold = tmp_path / "long_haul.hold"  # the first run goes on until the second has tried
    hold.touch()
    env = base_env(tmp_path, CRMTASKS_REDIS_PREFIX=prefix, CRMTASKS_TEST_TASKS="long_haul",
                   CRMTASKS_TEST_LONG_HAUL_HOLD=str(hold))
    processes.start("first_run", [*RUN, "--task", "long_haul"], env)
    wait_for(lambda: _running("long_haul"), timeout=30, what="the first run to start", processes=processes)

    result, _ = _run_now(env, "long_haul")
    hold.unlink()
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["stats"] == {"skip_reason": "overlap"}
    wait_for(lambda: completions("long_haul") == 1 and not _running("long_haul"), timeout=LONG_HAUL_S + 30,
             what="the first run to finish", processes=processes)
    assert sorted(status for _, status, _, _ in runs("long_haul")) == ["skipped", "succeeded"]
