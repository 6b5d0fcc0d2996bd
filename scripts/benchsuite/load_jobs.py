"""The job side of the load suite: 1,000 run-now messages for one job, sent at once to real workers.

A worker group (``dramatiq crmtasks.tasks``, 2 processes x 4 threads, on
the job's queue, against the bench database and Redis prefix) is started
as a deployment starts it; the messages are sent as ``crmtasks run
--enqueue`` sends them (the job's actor, trigger ``manual``). Every message
must end up in ``task_runs``: a run, or skipped as ``overlap`` while
another message of the job runs (the registered jobs' policy is ``skip``);
never two runs at once; and the queue drained in bounded time. When a run
ends before the rest are taken, a later message runs again (not at once),
so "ran" may be more than one.
"""

from __future__ import annotations

import datetime
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg2

from benchsuite.rows import Row

JOB = "precompute_facets"
MESSAGES = 1_000
PROCESSES, THREADS = 2, 4
DRAIN_LIMIT_S = 120.0
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def start_workers(queue: str, log: Path) -> subprocess.Popen:
    """The worker group, in a process group of its own, its output in ``log``."""
    env = dict(os.environ, CRMTASKS_METRICS_PORT=_free_port(), PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    command = [str(Path(sys.executable).parent / "dramatiq"), "crmtasks.tasks", "--processes", str(PROCESSES),
               "--threads", str(THREADS), "--queues", queue]
    with log.open("wb") as output:
        return subprocess.Popen(command, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=output,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop_workers(workers: subprocess.Popen) -> None:
    """SIGTERM to the group (workers finish what they run), SIGKILL after 60 s."""
    try:
        os.killpg(workers.pid, signal.SIGTERM)
        workers.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(workers.pid, signal.SIGKILL)
        workers.wait(timeout=10)
    except ProcessLookupError:
        pass


def _wait_for(predicate, timeout_s: float, what: str, workers: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if workers.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"load jobs: gave up waiting for {what} (workers exit code {workers.poll()}):\n{tail}")
        time.sleep(0.2)


def _recorded(url: str, message_ids: list[str]) -> list[tuple]:
    """(status, started_at, finished_at, error) of the finished task_runs rows of ``message_ids``."""
    with psycopg2.connect(url, application_name="crmtasks-bench") as conn, conn.cursor() as cur:
        cur.execute("SELECT status, started_at, finished_at, error FROM task_runs "
                    "WHERE message_id = ANY(%s) AND status <> 'running' ORDER BY started_at", (message_ids,))
        rows = cur.fetchall()
    conn.close()
    return rows


def _all_recorded(url: str, message_ids: list[str]) -> list[tuple] | None:
    rows = _recorded(url, message_ids)
    return rows if len(rows) >= len(message_ids) else None


def most_at_once(runs: list[tuple]) -> int:
    """The most runs whose (started_at, finished_at) intervals overlap at one instant."""
    events = sorted([(started, 1) for _, started, _, _ in runs] + [(finished, -1) for _, _, finished, _ in runs],
                    key=lambda event: (event[0], event[1]))
    most = current = 0
    for _, step in events:
        current += step
        most = max(most, current)
    return most


def measure(url: str, settings, log_dir: Path) -> dict:
    """Start the workers, send the messages at once, wait until every one is recorded; what happened."""
    from crmtasks.broker import heartbeats
    from crmtasks.broker.factory import build_runtime
    from crmtasks.jobs import registry

    spec = registry.get(JOB)
    log = log_dir / "load-workers.log"
    workers = start_workers(spec.queue, log)
    try:
        _wait_for(lambda: len(heartbeats.alive(settings, "worker")) >= PROCESSES, 120, "the workers to start",
                  workers, log)
        actor = build_runtime(settings).actors[JOB]
        sent_at = time.monotonic()
        message_ids = [actor.send().message_id for _ in range(MESSAGES)]
        send_s = time.monotonic() - sent_at
        rows = _wait_for(lambda: _all_recorded(url, message_ids), spec.time_limit_s + DRAIN_LIMIT_S,
                         f"{MESSAGES:,} messages to be recorded", workers, log)
        drain_s = time.monotonic() - sent_at
    finally:
        stop_workers(workers)
    runs = [row for row in rows if row[0] != "skipped"]
    return {"job": JOB, "messages": MESSAGES, "workers": f"{PROCESSES} processes x {THREADS} threads",
            "recorded": len(rows), "ran": len(runs), "failed": sum(row[0] == "failed" for row in runs),
            "skipped": sum(row[0] == "skipped" for row in rows), "most_at_once": most_at_once(runs),
            "send_s": round(send_s, 3), "drain_s": round(drain_s, 3),
            "run_s": [round((finished - started).total_seconds(), 3) for _, started, finished, _ in runs]}


def rows_from(result: dict) -> list[Row]:
    detail = (f"{result['ran']} ran ({result['failed']} failed), {result['skipped']} skipped as overlap; "
              f"at most {result['most_at_once']} at once; {result['workers']}; sent in {result['send_s']:.2f} s")
    return [
        Row(suite="load", metric=f"{MESSAGES:,} run-now messages for {result['job']}: recorded in task_runs",
            unit="count", baseline=None, ours=float(result["recorded"]),
            target=f"{MESSAGES:,}, never two runs at once, none failed",
            met=result["recorded"] == MESSAGES and result["most_at_once"] <= 1 and result["failed"] == 0,
            detail=detail),
        Row(suite="load", metric=f"{MESSAGES:,} run-now messages for {result['job']}: queue drained", unit="s",
            baseline=None, ours=result["drain_s"], target=f"<= {DRAIN_LIMIT_S:g} s", met=result["drain_s"] <= DRAIN_LIMIT_S,
            detail=f"{MESSAGES / result['drain_s']:,.0f} messages/s from the first send to the last record; "
                   f"runs took {', '.join(f'{s:.2f}' for s in result['run_s'][:5])} s"),
    ]


def run(url: str, settings, log_dir: Path) -> tuple[list[Row], dict]:
    result = measure(url, settings, log_dir)
    result["measured_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return rows_from(result), result
