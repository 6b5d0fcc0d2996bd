"""The job mutex against the real Redis: one holder, owner-checked release, expiry, dead holders taken over."""

from __future__ import annotations

import dataclasses
import datetime
import os
import socket
import subprocess
import sys
import time
import uuid

import psutil
import pytest

from crmtasks.broker.heartbeats import heartbeat_key
from crmtasks.broker.holders import LockHolder, why_dead
from crmtasks.broker.middleware.job_mutex import job_lock, take_job_lock
from crmtasks.broker.mutex import RedisMutex
from crmtasks.models import TaskRun
from crmtasks.redis_client import key
from crmtasks.runs import history
from crmtasks.settings import get_settings


def _mutex(redis_client, ttl_ms=10_000):
    return RedisMutex(redis_client, key(get_settings(), "test-lock", uuid.uuid4().hex), ttl_ms=ttl_ms)


def test_one_holder_at_a_time(redis_client):
    mutex = _mutex(redis_client)
    assert mutex.acquire("run-a")
    assert not mutex.acquire("run-b")
    assert mutex.holder().token == "run-a"
    assert mutex.release("run-a")
    assert mutex.acquire("run-b")
    mutex.release("run-b")


def test_release_by_a_non_owner_does_nothing(redis_client):
    mutex = _mutex(redis_client)
    assert mutex.acquire("run-a")
    assert not mutex.release("run-b")
    assert mutex.holder().token == "run-a"
    mutex.release("run-a")


def test_same_token_reenters(redis_client):
    """A redelivered message (its worker died) carries the same id and may run at once."""
    mutex = _mutex(redis_client)
    assert mutex.acquire("message-1")
    assert mutex.acquire("message-1")
    mutex.release("message-1")


def test_lock_of_a_killed_holder_expires(redis_client):
    mutex = _mutex(redis_client, ttl_ms=200)
    assert mutex.acquire("dead-run")
    time.sleep(0.4)
    assert mutex.acquire("next-run")
    assert not mutex.release("dead-run")
    mutex.release("next-run")


def test_keys_carry_the_deployment_prefix():
    settings = get_settings()
    assert key(settings, "lock", "x") == f"{settings.redis_prefix}:lock:x"


# --- holders: the lock names its holder, and a dead holder's lock is taken over --------------------


def test_the_lock_names_the_process_holding_it(redis_client):
    mutex = _mutex(redis_client)
    holder = LockHolder.this_process("run-now-1")
    assert mutex.acquire(holder)
    found = mutex.holder()
    assert found == holder
    assert (found.token, found.host, found.pid) == ("run-now-1", socket.gethostname(), os.getpid())
    assert found.started == pytest.approx(psutil.Process().create_time())
    assert mutex.release(holder) and mutex.holder() is None


def test_a_redelivered_message_reenters_and_the_lock_then_names_its_new_holder(redis_client):
    mutex = _mutex(redis_client)
    dead_worker = LockHolder(token="message-1", host="worker-a", pid=4242, heartbeat="worker")
    assert mutex.acquire(dead_worker)
    here = LockHolder.this_process("message-1")
    assert mutex.acquire(here)
    assert mutex.holder() == here
    assert not mutex.release(dead_worker)  # the first worker, were it alive, cannot free it any more
    assert mutex.release(here)


def test_take_over_is_a_compare_and_set_on_the_holder_read(redis_client):
    mutex = _mutex(redis_client)
    assert mutex.acquire(LockHolder(token="old", host="elsewhere", pid=1))
    dead = mutex.holder()
    assert mutex.take_over(dead, "first-taker")
    assert not mutex.take_over(dead, "second-taker")  # of two takers, one wins
    assert mutex.holder().token == "first-taker"
    mutex.release("first-taker")


def test_holder_values_round_trip_and_foreign_values_are_bare_tokens():
    holder = LockHolder(token="m-1", host="h", pid=7, started=12.5, namespace="b/1", heartbeat="worker")
    assert LockHolder.decode(holder.encode()) == holder
    assert LockHolder.decode(holder.encode().encode()).raw == holder.encode()
    for foreign in ("message-1", "[1, 2]", '{"pid": 3}', "null"):
        assert LockHolder.decode(foreign) == LockHolder(token=foreign)
        assert why_dead(LockHolder.decode(foreign), get_settings()) is None  # names no process: alive
    assert LockHolder(token="plain").encode() == "plain"


def _exited_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _zombie() -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    child.kill()
    wait_until = time.monotonic() + 10
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < wait_until:
        time.sleep(0.05)
    return child


def _here(pid: int, **fields) -> LockHolder:
    values = {"token": "run-now-x", "host": socket.gethostname(), "pid": pid, "started": None,
              "namespace": LockHolder.this_process("t").namespace}
    values.update(fields)
    return LockHolder(**values)


def test_who_is_dead(redis_client):
    settings = get_settings()
    me = LockHolder.this_process("t")
    assert why_dead(me, settings) is None
    assert why_dead(_here(_exited_pid()), settings) is not None
    zombie = _zombie()
    try:
        assert why_dead(_here(zombie.pid), settings) is not None  # killed, not yet reaped by its parent
    finally:
        zombie.wait()
    # Our pid, another start time: the holder's pid was reused by this process.
    assert why_dead(dataclasses.replace(me, started=me.started - 3600), settings) is not None
    # The same hostname in another pid namespace (another container): its pids are not ours to check.
    assert why_dead(_here(_exited_pid(), namespace="other-boot/1"), settings) is None
    # Another host: dead only when it published a heartbeat and that heartbeat is gone.
    assert why_dead(LockHolder(token="m", host="worker-b", pid=42), settings) is None
    gone = LockHolder(token="m", host="worker-b", pid=42, heartbeat="worker")
    assert why_dead(gone, settings) == "pid 42 on worker-b; its worker heartbeat stopped"
    beat_key = heartbeat_key(settings, "worker", "worker-b", 42)
    redis_client.set(beat_key, "{}", px=5_000)
    try:
        assert why_dead(gone, settings) is None
    finally:
        redis_client.delete(beat_key)


def _run_row(task: str, host: str, pid: int, status: str = "running") -> int:
    now = datetime.datetime.now(datetime.timezone.utc)
    return TaskRun.create(task=task, trigger="manual", status=status, started_at=now, stats={}, host=host,
                          pid=pid).id


def test_a_dead_holders_lock_is_taken_over_and_its_runs_closed(crm_db, redis_client):
    settings = get_settings()
    host, dead_pid = socket.gethostname(), _exited_pid()
    lock = job_lock(settings, f"job-{uuid.uuid4().hex[:6]}", 60_000)
    task = lock.key.rsplit(":", 1)[1]
    assert lock.acquire(_here(dead_pid))
    abandoned = _run_row(task, host, dead_pid)
    others = [_run_row(task, host, os.getpid()), _run_row("other_job", host, dead_pid),
              _run_row(task, "elsewhere", dead_pid), _run_row(task, host, dead_pid, status="succeeded")]

    me = LockHolder.this_process("run-now-taker")
    assert take_job_lock(settings, lock, me, task)
    assert lock.holder() == me
    run = TaskRun.get_by_id(abandoned)
    assert (run.status, run.error) == ("failed", f"abandoned: the process holding the lock died (pid {dead_pid} on {host})")
    assert run.finished_at is not None
    assert [TaskRun.get_by_id(i).status for i in others] == ["running", "running", "running", "succeeded"]
    lock.release(me)


def test_a_live_holders_lock_is_respected(crm_db, redis_client):
    settings = get_settings()
    lock = job_lock(settings, f"job-{uuid.uuid4().hex[:6]}", 60_000)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for holder in (_here(live.pid, started=psutil.Process(live.pid).create_time()),
                       LockHolder(token="m", host="worker-b", pid=42),  # another host, no heartbeat
                       LockHolder(token="message-on-an-old-version")):
            assert lock.acquire(holder)
            assert not take_job_lock(settings, lock, LockHolder.this_process("run-now-y"), "some_job")
            assert lock.holder() == holder
            lock.release(holder)
    finally:
        live.kill()
        live.wait()


def test_the_next_run_closes_the_runs_whose_process_on_this_host_is_gone(crm_db):
    host, dead_pid = socket.gethostname(), _exited_pid()
    live = psutil.Process().parent().pid  # alive for as long as this test runs
    dead_run, live_run, far_run = (_run_row("tidy", host, dead_pid), _run_row("tidy", host, live),
                                   _run_row("tidy", "elsewhere", dead_pid))
    other_job = _run_row("other_job", host, dead_pid)
    assert history.abandon_dead_runs_here("tidy") == 1
    assert TaskRun.get_by_id(dead_run).error == (
        f"abandoned: the process holding the lock died (pid {dead_pid} on {host})")
    assert [TaskRun.get_by_id(i).status for i in (dead_run, live_run, far_run, other_job)] == [
        "failed", "running", "running", "running"]
