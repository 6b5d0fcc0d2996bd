"""Logs of a real worker (as the Procfile runs it): JSON on request, one object per line, also in the log file."""

from __future__ import annotations

import json
import os
import signal

import redis

from tests.acceptance.procs import (
    base_env,
    enqueue,
    free_port,
    runs,
    unique_prefix,
    wait_for,
)


def _records(text: str) -> list[dict]:
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(isinstance(record, dict) for record in records)
    return records


def test_json_logs_go_to_stderr_and_the_log_file_one_object_per_line(proc_db, processes, tmp_path):
    prefix = unique_prefix("logs")
    log_file = tmp_path / "crmtasks.log"
    env = base_env(tmp_path, CRMTASKS_REDIS_PREFIX=prefix, CRMTASKS_TEST_TASKS="tick", CRMTASKS_LOG_FORMAT="json",
                   CRMTASKS_LOG_FILE=str(log_file), CRMTASKS_METRICS_PORT=free_port())
    worker = processes.start("worker", ["dramatiq", "--skip-logging", "tests.acceptance.proc_app", "--processes", "1",
                                        "--threads", "1", "--queues", "default"], env)
    redis.Redis.from_url(os.environ["REDIS_URL"]).set(f"{prefix}:test:tick_fails", 1)
    enqueue("tests.tick", "default", redis_url=os.environ["REDIS_URL"], prefix=prefix)
    wait_for(lambda: runs("tick") and runs("tick")[-1][1] == "failed", timeout=30, what="tick to fail",
             processes=processes)
    worker.signal_group(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0

    written = _records(worker.output())  # every line the worker wrote is a JSON object
    in_file = _records(log_file.read_text())
    assert [r["message"] for r in in_file] == [r["message"] for r in written]
    failures = [r for r in in_file if r["logger"] == "dramatiq.worker.WorkerThread" and r["level"] == "ERROR"]
    assert len(failures) == 1 and "ValueError: tick was told to fail" in failures[0]["exception"]
    assert any(r["message"] == "Worker process is ready for action." for r in in_file)
    assert {"time", "level", "logger", "pid", "message"} <= set(in_file[0])
