"""``crmtasks check`` and the Prometheus exporter against real workers and a real scheduler."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request

import psutil
import pytest
import redis

from tests.acceptance.procs import (
    ROOT,
    base_env,
    enqueue,
    free_port,
    runs,
    unique_prefix,
    wait_for,
)


def _check(env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.acceptance.proc_cli", "check"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


def _problems(result) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("PROBLEM")]


def _succeeded(task):
    return [run for run in runs(task) if run[1] == "succeeded"]


def test_check_without_workers_or_scheduler_exits_1_and_names_them(proc_db, tmp_path):
    env = base_env(tmp_path, CRMTASKS_REDIS_PREFIX=unique_prefix("check-empty"), CRMTASKS_TEST_TASKS="tick")
    result = _check(env)
    assert result.returncode == 1, result.stdout + result.stderr
    problems = _problems(result)
    assert any("queue default: no live worker" in line for line in problems), problems
    assert any("no live scheduler" in line for line in problems), problems
    assert any("tick has never succeeded" in line for line in problems), problems


@pytest.mark.slow
def test_check_passes_with_a_running_system_and_names_a_failing_job(proc_db, processes, tmp_path):
    prefix = unique_prefix("check-running")
    env = base_env(tmp_path, CRMTASKS_REDIS_PREFIX=prefix, CRMTASKS_TEST_TASKS="tick",
                   CRMTASKS_METRICS_PORT=free_port())
    processes.worker("worker", env, queues=["default"])
    processes.scheduler("scheduler", env)
    # The scheduler sends this minute's slot as it starts.
    wait_for(lambda: _succeeded("tick"), timeout=30, what="a scheduled tick to succeed", processes=processes)
    wait_for(lambda: _check(env).returncode == 0, timeout=20, what="`crmtasks check` to pass",
             processes=processes, interval=1)
    healthy = _check(env)
    assert healthy.returncode == 0 and _problems(healthy) == [], healthy.stdout

    redis.Redis.from_url(os.environ["REDIS_URL"]).set(f"{prefix}:test:tick_fails", 1)
    enqueue("tests.tick", "default", redis_url=os.environ["REDIS_URL"], prefix=prefix)
    wait_for(lambda: runs("tick")[-1][1] == "failed", timeout=30, what="the tick sent by hand to fail",
             processes=processes)
    failing = _check(env)
    assert failing.returncode == 1
    assert _problems(failing) == ["PROBLEM jobs      tick failed on its last run: ValueError: tick was told to fail"]


def _non_loopback_addresses() -> list[str]:
    return [address.address for addresses in psutil.net_if_addrs().values() for address in addresses
            if address.family == socket.AF_INET and not address.address.startswith("127.")]


@pytest.mark.slow
def test_worker_exports_job_metrics_on_loopback_only(proc_db, processes, tmp_path):
    port = free_port()
    prefix = unique_prefix("metrics")
    env = base_env(tmp_path, CRMTASKS_REDIS_PREFIX=prefix, CRMTASKS_TEST_TASKS="tick", CRMTASKS_METRICS_PORT=port)
    worker = processes.worker("worker", env, queues=["default"])
    enqueue("tests.tick", "default", redis_url=os.environ["REDIS_URL"], prefix=prefix)
    wait_for(lambda: _succeeded("tick"), timeout=30, what="tick to succeed", processes=processes)

    def scrape() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                return response.read().decode()
        except OSError:
            return ""

    metrics = wait_for(lambda: 'crmtasks_job_last_success_timestamp_seconds{task="tick"}' in scrape() and scrape(),
                       timeout=20, what="the exporter to show tick's last success", processes=processes)
    assert 'crmtasks_job_runs_total{outcome="succeeded",task="tick"} 1.0' in metrics
    assert 'dramatiq_messages_total{actor_name="tests.tick",queue_name="default"} 1.0' in metrics

    worker.remember_descendants()
    ours = set(worker.alive_pids())
    listening = [c for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == int(port)]
    assert listening and {c.pid for c in listening} <= ours
    assert {c.laddr.ip for c in listening} == {"127.0.0.1"}
    for address in _non_loopback_addresses():
        with socket.socket() as sock:
            sock.settimeout(2)
            assert sock.connect_ex((address, int(port))) != 0, f"the exporter answers on {address}"
