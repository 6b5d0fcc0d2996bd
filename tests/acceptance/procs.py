"""Helpers for tests that run crmtasks as real processes: start, watch, signal and always clean up.

Every process is started in a session of its own (its process group), with
its output in a file under the test's tmp_path; the ``processes`` fixture
kills every group and every descendant it has seen when the test ends,
whatever happened. Waits are bounded: a test that waits too long fails with
the processes' output, it never hangs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dramatiq
import psutil
import psycopg2
import pytest
from dramatiq.brokers.redis import RedisBroker

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
APP = "tests.acceptance.proc_app"


def base_env(tmp_path: Path, **overrides: str | None) -> dict[str, str]:
    """The environment of a test's processes: this run's database and Redis, our worktree first on the path."""
    env = dict(os.environ)
    env.update(PYTHONPATH=str(ROOT), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PYTHONUNBUFFERED="1",
               CRMTASKS_HOME=str(tmp_path / "home"))
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def free_port() -> str:
    """A TCP port free on 127.0.0.1 right now (for a process's Prometheus exporter)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def unique_prefix(label: str) -> str:
    """A Redis prefix of the test's own, under this run's (so the run's cleanup removes it)."""
    return f"{os.environ['CRMTASKS_REDIS_PREFIX']}-{label}-{uuid.uuid4().hex[:6]}"


class Proc:
    """One started command, in its own process group, its output going to ``log``."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.args = args
        self.log = log
        self._log_file = log.open("wb")
        self.popen = subprocess.Popen(args, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self._log_file,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.popen.pid
        self.seen: set[int] = {self.pid}

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def remember_descendants(self) -> list[psutil.Process]:
        try:
            found = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        self.seen.update(p.pid for p in found)
        return found

    def signal_group(self, signum: int) -> None:
        self.remember_descendants()
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def running(self) -> bool:
        return self.popen.poll() is None

    def alive_pids(self) -> list[int]:
        """Processes this command started (and we saw) that still run."""
        return [pid for pid in sorted(self.seen) if psutil.pid_exists(pid) and not _is_zombie(pid)]

    def kill_everything(self) -> None:
        self.remember_descendants()
        self.signal_group(signal.SIGKILL)
        for pid in self.seen:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._log_file.close()


def _is_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class Processes:
    """What the ``processes`` fixture yields: a starter that remembers what to clean up."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[Proc] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> Proc:
        proc = Proc(name, args, env, self.tmp_path / f"{name}.log")
        self.started.append(proc)
        return proc

    def worker(self, name: str, env: dict[str, str], *, queues=("default",), processes: int = 1,
               threads: int = 1, module: str = APP) -> Proc:
        return self.start(name, [str(BIN / "dramatiq"), module, "--processes", str(processes), "--threads",
                                 str(threads), "--queues", *queues], env)

    def scheduler(self, name: str, env: dict[str, str], module: str = APP) -> Proc:
        # Started by its console script: the scheduler boot runs when argv[0] is `periodiq`.
        return self.start(name, [str(BIN / "periodiq"), module], env)

    def outputs(self) -> str:
        return "\n".join(f"----- {p.name} ({' '.join(p.args[:2])})\n{p.output()[-4000:]}" for p in self.started)

    def cleanup(self) -> None:
        for proc in self.started:
            proc.kill_everything()


@pytest.fixture()
def processes(tmp_path):
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        started.cleanup()


def wait_for(predicate, *, timeout: float, what: str, processes: Processes | None = None, interval: float = 0.2):
    """Poll ``predicate`` until it returns something truthy (returned) or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            details = processes.outputs() if processes else ""
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{details}")
        time.sleep(interval)


def query(sql: str, params=()) -> list[tuple]:
    with psycopg2.connect(os.environ["DATABASE_URL"]) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall() if cur.description else []
    conn.close()
    return rows


def runs(task: str) -> list[tuple]:
    """(trigger, status, message_id, error) of every run of ``task``, oldest first."""
    return query("SELECT trigger, status, message_id, error FROM task_runs WHERE task = %s ORDER BY id", (task,))


def completions(task: str) -> int:
    return query("SELECT count(*) FROM proc_completions WHERE task = %s", (task,))[0][0]


def enqueue(actor_name: str, queue: str, *, redis_url: str, prefix: str) -> str:
    """Send a message as ``crmtasks run --enqueue`` would, without importing the test app here; its id."""
    broker = RedisBroker(url=redis_url, namespace=prefix, middleware=[])
    try:
        message = broker.enqueue(dramatiq.Message(queue_name=queue, actor_name=actor_name, args=(), kwargs={},
                                                  options={}))
    finally:
        broker.close()
    return message.message_id


@pytest.fixture()
def proc_db(migrated_database_url):
    """This run's database with an empty run history and audit ledger, and the test jobs' completions table.

    The ledger too: `crmtasks check` expects the archive of every month it records, and the audit tests that
    shared this database kept their archives elsewhere.
    """
    from tests.acceptance.proc_jobs import COMPLETIONS_DDL

    query(COMPLETIONS_DDL)
    query("TRUNCATE task_runs, schedule_slots, job_pauses, job_schedules, proc_completions, audit_retention_ledger "
          "RESTART IDENTITY CASCADE")
    return migrated_database_url
