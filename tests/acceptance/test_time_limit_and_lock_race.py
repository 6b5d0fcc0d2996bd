"""Two claims with real worker processes: a time limit sends a run to the dead letters, and of two workers racing
for one job's lock exactly one runs it.

Workers are ``dramatiq tests.acceptance.proc_app`` processes (the test jobs
of tests.acceptance.proc_jobs declared exactly as the real jobs are), on
real Redis and PostgreSQL.
"""

from __future__ import annotations

import json
import os

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
READY = "Worker process is ready for action."


def _worker_env(tmp_path, prefix, tasks, **overrides):
    return base_env(tmp_path, CRMTASKS_REDIS_PREFIX=prefix, CRMTASKS_TEST_TASKS=tasks,
                    CRMTASKS_METRICS_PORT=free_port(), **overrides)


def _dead_letters(prefix: str, queue: str) -> list[dict]:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    return [json.loads(raw) for raw in client.hvals(f"{prefix}:{queue}.XQ.msgs")]


def test_a_run_past_its_time_limit_is_failed_and_dead_lettered_not_retried(proc_db, processes, tmp_path):
    prefix = unique_prefix("time-limit")
    processes.worker("worker", _worker_env(tmp_path, prefix, "overrun"), queues=["default"])
    message_id = enqueue("tests.overrun", "default", redis_url=os.environ["REDIS_URL"], prefix=prefix)

    dead = wait_for(lambda: _dead_letters(prefix, "default"), timeout=60, what="overrun in the dead letters",
                    processes=processes)
    assert [message["message_id"] for message in dead] == [message_id]
    wait_for(lambda: [status for _, status, _, _ in runs("overrun")] == ["failed"], timeout=30,
             what="the run recorded as failed", processes=processes)
    [(trigger, status, run_message, error)] = runs("overrun")
    assert (trigger, status, run_message) == ("manual", "failed", message_id)
    assert "TimeLimitExceeded" in error
    assert completions("overrun") == 0  # stopped, not finished
    # Not retried (a time limit is not a fault a retry cures) and nothing left waiting.
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    assert client.hlen(f"{prefix}:default.msgs") == 0 and client.zcard(f"{prefix}:default.DQ") == 0


def test_two_worker_processes_racing_for_one_jobs_lock_one_runs_the_other_skips_it(proc_db, processes, tmp_path):
    prefix = unique_prefix("lock-race")
    # One message at a time per process: the second message goes to the other worker, not behind the first.
    workers = [processes.worker(name, _worker_env(tmp_path, prefix, "long_haul", dramatiq_queue_prefetch="1"),
                                queues=["workflow_io"]) for name in ("first", "second")]
    wait_for(lambda: all(READY in worker.output() for worker in workers), timeout=60, what="both workers ready",
             processes=processes)
    sent = {enqueue("tests.long_haul", "workflow_io", redis_url=os.environ["REDIS_URL"], prefix=prefix)
            for _ in range(2)}

    wait_for(lambda: sorted(status for _, status, _, _ in runs("long_haul")) == ["skipped", "succeeded"],
             timeout=LONG_HAUL_S + 60, what="one run and one skip", processes=processes)
    rows = query("SELECT status, stats ->> 'skip_reason', message_id, pid FROM task_runs WHERE task = 'long_haul' "
                 "ORDER BY id")
    assert {row[2] for row in rows} == sent
    assert sorted((status, reason) for status, reason, _, _ in rows) == [("skipped", "overlap"), ("succeeded", None)]
    for worker in workers:
        worker.remember_descendants()
    worker_pids = {pid for worker in workers for pid in worker.seen}
    assert len({pid for _, _, _, pid in rows}) == 2 and {pid for _, _, _, pid in rows} <= worker_pids  # two processes
    assert completions("long_haul") == 1
    assert _dead_letters(prefix, "workflow_io") == []  # a skip is acknowledged, not failed
