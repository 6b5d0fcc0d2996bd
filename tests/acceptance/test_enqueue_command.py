"""``python -m crmtasks.run --enqueue`` sends through the broker the factory builds, in a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_enqueue_sends_each_job_to_its_queue_with_its_actor(migrated_database_url, redis_client):
    queued = f"{os.environ['CRMTASKS_REDIS_PREFIX']}:default.msgs"
    redis_client.delete(queued, queued[: -len(".msgs")])
    result = subprocess.run([sys.executable, "-m", "tests.acceptance.jobs_for_tests", "--enqueue", "--json"],
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    sent = json.loads(result.stdout)
    assert [(s["task"], s["actor"], s["queue"]) for s in sent] == [
        ("tally_users", "tests.tally_users", "default"), ("fail_on_bad_data", "tests.fail_on_bad_data", "default")]
    messages = {m["message_id"]: m for m in map(json.loads, redis_client.hvals(queued))}
    assert {s["message_id"]: s["actor"] for s in sent} == {i: m["actor_name"] for i, m in messages.items()}
    redis_client.delete(queued, queued[: -len(".msgs")])
