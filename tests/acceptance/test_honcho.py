"""``honcho start`` with the project's Procfile brings the whole system up on the embedded default.

Nothing is configured (no DATABASE_URL, no REDIS_URL): the processes start
the embedded PostgreSQL and Redis under a fresh CRMTASKS_HOME, the first one
migrates and seeds it, and the scheduler runs every real job
on a one-minute schedule override. Then honcho is stopped as an operator
would, and nothing may be left running. About 30 s (initdb and the demo seed
take most of it).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import psycopg2
import pytest
import redis

from crmtasks.jobs.registry import names
from tests.acceptance.procs import BIN, ROOT, base_env, wait_for

JOBS = names()

pytestmark = pytest.mark.slow
PROCESS_TYPES = ("worker_io", "worker_cpu", "worker", "scheduler", "dashboard")


def _free_base_port() -> int:
    """A base port P with P, P+100, ... P+400 free: honcho gives each Procfile line $PORT = P + 100 * i.

    Below Linux's ephemeral range (32768+), so no outgoing connection holds one of them.
    """
    for _ in range(50):
        base = random.randrange(20000, 32000, 100)
        if all(_port_is_free(base + 100 * i) for i in range(len(PROCESS_TYPES))):
            return base
    pytest.fail("no free range of ports for honcho")


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _crmtasks(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crmtasks", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)


def _http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


@pytest.fixture()
def embedded_home():
    """A fresh CRMTASKS_HOME outside pytest's temporary tree.

    The embedded PostgreSQL runs as another user (as root), which must be
    able to reach its data directory; pytest makes /tmp/pytest-of-<user>
    private again whenever any pytest session starts on the machine.
    """
    home = Path(tempfile.mkdtemp(prefix="crmtasks-honcho-")) / "home"
    yield home
    shutil.rmtree(home.parent, ignore_errors=True)


@pytest.fixture()
def embedded_env(tmp_path, embedded_home):
    """The environment of a fresh machine: nothing configured, state under a new CRMTASKS_HOME."""
    env = base_env(tmp_path, DATABASE_URL=None, REDIS_URL=None, CRMTASKS_REDIS_PREFIX=None,
                   CRMTASKS_HOME=str(embedded_home), CRMTASKS_SCHEDULE_CATCHUP_S="0",
                   **{f"CRMTASKS_SCHEDULE_{task.upper()}": "* * * * *" for task in JOBS})
    try:
        yield env
    finally:
        stopped = _crmtasks(env, "services", "stop")
        if stopped.returncode != 0:  # never leave the servers this test started running
            _stop_by_pid(embedded_home)
        assert stopped.returncode == 0, stopped.stderr


def _stop_by_pid(home) -> None:
    from crmtasks.services import embedded

    for status in embedded.status(home):
        if status.running and status.pid:
            os.kill(status.pid, signal.SIGINT if status.name == "postgres" else signal.SIGTERM)


def _embedded_urls(home) -> dict[str, str]:
    from crmtasks.services import embedded

    return {status.name: status.url for status in embedded.status(home) if status.running}


def test_honcho_starts_the_system_runs_a_scheduled_job_and_stops_cleanly(embedded_env, embedded_home, processes):
    base = _free_base_port()
    honcho = processes.start("honcho", [str(BIN / "honcho"), "start", "-f", str(ROOT / "Procfile"), "-p", str(base)],
                             embedded_env)
    home = embedded_home

    def scheduled_run_succeeded():
        assert honcho.running(), f"honcho stopped early:\n{honcho.output()[-6000:]}"
        urls = _embedded_urls(home)
        if "postgres" not in urls:
            return None
        try:
            with psycopg2.connect(urls["postgres"]) as conn, conn.cursor() as cur:
                cur.execute("SELECT s.task, r.status FROM schedule_slots s JOIN task_runs r ON r.id = s.run_id "
                            "WHERE s.state = 'ran' AND r.trigger = 'schedule' ORDER BY r.id")
                first_runs = {}
                for task, status in cur.fetchall():
                    first_runs.setdefault(task, status)
                return first_runs if set(first_runs) == set(JOBS) else None
        except psycopg2.Error:  # still migrating
            return None

    statuses = wait_for(scheduled_run_succeeded, timeout=150, what="every job to run on its schedule",
                        processes=processes, interval=1)
    assert statuses == {task: "succeeded" for task in JOBS}
    assert "* * * * * (UTC)          crmtasks.broker.actors:system_config.audit_maintenance@workflow_io" in honcho.output()

    # Every Procfile line is up: worker heartbeats (1 + 2 + 1 processes), the scheduler's, the dashboard's
    # (it publishes its threads for the connection count of `crmtasks check`), the exporters.
    client = redis.Redis.from_url(_embedded_urls(home)["redis"])

    def heartbeats() -> dict[str, int]:
        roles = [key.decode().split(":")[2] for key in client.scan_iter("crmtasks:heartbeat:*")]
        return {role: roles.count(role) for role in roles}

    wait_for(lambda: heartbeats() == {"worker": 4, "scheduler": 1, "dashboard": 1}, timeout=30,
             what="4 worker processes, 1 scheduler and 1 dashboard to beat", processes=processes)
    urls = [f"http://127.0.0.1:{base + offset}/metrics" for offset in (0, 100, 200)] + [f"http://127.0.0.1:{base + 400}/"]
    wait_for(lambda: all(_http_status(url) == 200 for url in urls), timeout=20,
             what="the three exporters and the dashboard to answer", processes=processes)

    check = _crmtasks(embedded_env, "check")
    assert check.returncode == 0, check.stdout + check.stderr

    # Stop as an operator does (Ctrl-C or a supervisor's SIGTERM to honcho): every process exits on its own.
    for task in JOBS:
        paused = _crmtasks(embedded_env, "pause", task, "--note", "stopping the test system")
        assert paused.returncode == 0, paused.stderr
    # (The embedded servers are daemons, no longer honcho's descendants: they keep running.)
    started = {honcho.pid, *(p.pid for p in honcho.remember_descendants())}
    assert len(started) >= 1 + len(PROCESS_TYPES)
    honcho.popen.send_signal(signal.SIGTERM)
    assert honcho.wait(timeout=30) in (0, 143), honcho.output()
    output = honcho.output()
    assert "SIGKILL" not in output, output
    for process_type in ("worker_io", "worker_cpu", "worker", "scheduler"):
        assert f"{process_type}.1 stopped (rc=0)" in output  # finished their work and exited on their own
    assert "dashboard.1 stopped" in output
    wait_for(lambda: not [pid for pid in started if psutil.pid_exists(pid) and not _zombie(pid)], timeout=10,
             what="every process honcho started to be gone", processes=processes)
    assert os.path.isdir(home / "postgres")


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
