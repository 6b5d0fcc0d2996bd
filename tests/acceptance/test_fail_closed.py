"""A job whose pause check fails in PostgreSQL does not run: it is decided, and recorded, once the database answers.

Issue 16, item 4: Dramatiq logs an exception raised in a middleware hook
at CRITICAL and then runs the message, so a paused job ran whenever the
pause check itself failed. Real processes and a real fault: the worker
connects as a role of its own, whose right to read ``job_pauses`` is taken
away while a paused job's scheduled slot waits in the queue; then given
back.
"""

from __future__ import annotations

import datetime
import os
import uuid
from urllib.parse import urlsplit, urlunsplit

import dramatiq
import psycopg2
import pytest
from dramatiq.brokers.redis import RedisBroker

from tests.acceptance.procs import (
    base_env,
    completions,
    free_port,
    query,
    runs,
    unique_prefix,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture()
def worker_role(proc_db):
    """A login role with every right on this run's tables; yields (name, its DATABASE_URL)."""
    name = f"crmtasks_worker_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    database = urlsplit(proc_db).path.lstrip("/")
    statements = [f"CREATE ROLE {name} LOGIN PASSWORD '{password}'",
                  f'GRANT CONNECT ON DATABASE "{database}" TO {name}',
                  f"GRANT USAGE ON SCHEMA public TO {name}",
                  f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {name}",
                  f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {name}"]
    for statement in statements:
        query(statement)
    parts = urlsplit(proc_db)
    where = parts.netloc.rsplit("@", 1)[-1]
    yield name, urlunsplit(parts._replace(netloc=f"{name}:{password}@{where}"))
    conn = psycopg2.connect(proc_db)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP OWNED BY {name}")
        cur.execute(f"DROP ROLE {name}")
    conn.close()


def _send_for_slot(prefix: str, slot: datetime.datetime) -> str:
    """What a scheduler does for a slot: claim it in schedule_slots, then send its message; the message id."""
    query("INSERT INTO schedule_slots (task, slot_at, state, scheduler) VALUES ('tick', %s, 'enqueued', 'test')",
          (slot,))
    broker = RedisBroker(url=os.environ["REDIS_URL"], namespace=prefix, middleware=[])
    try:
        message = broker.enqueue(dramatiq.Message(
            queue_name="default", actor_name="tests.tick", args=(), kwargs={},
            options={"scheduled_at": slot.isoformat(), "crmtasks_slot": slot.isoformat()}))
    finally:
        broker.close()
    query("UPDATE schedule_slots SET message_id = %s WHERE task = 'tick' AND slot_at = %s", (message.message_id, slot))
    return message.message_id


def _slot(slot: datetime.datetime) -> tuple:
    return query("SELECT state, reason, run_id IS NOT NULL FROM schedule_slots WHERE task = 'tick' AND slot_at = %s",
                 (slot,))[0]


def test_a_paused_job_whose_pause_check_fails_does_not_run_and_its_slot_is_recorded_skipped_later(
        worker_role, processes, tmp_path):
    role, role_url = worker_role
    prefix = unique_prefix("pause-check")
    # A daily schedule: the slot stays fresh (not stale) for the whole test.
    env = base_env(tmp_path, CRMTASKS_REDIS_PREFIX=prefix, CRMTASKS_TEST_TASKS="tick", DATABASE_URL=role_url,
                   CRMTASKS_SCHEDULE_TICK="0 0 * * *", CRMTASKS_METRICS_PORT=free_port())
    slot = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0)
    _send_for_slot(prefix, slot)
    query("INSERT INTO job_pauses (task, note) VALUES ('tick', 'index rebuild')")
    query(f"REVOKE SELECT ON job_pauses FROM {role}")  # the pause check now fails inside PostgreSQL

    worker = processes.worker("worker", env, queues=["default"])
    deferred = "tick not started: the pause check failed"
    wait_for(lambda: worker.output().count(deferred) >= 2 or completions("tick"), timeout=45,
             what="the worker to try the pause check twice", processes=processes)
    assert completions("tick") == 0, "the paused job ran"
    assert "permission denied for table job_pauses" in worker.output()
    assert runs("tick") == []
    assert _slot(slot) == ("enqueued", None, False)

    query(f"GRANT SELECT ON job_pauses TO {role}")  # the database answers again
    wait_for(lambda: _slot(slot)[0] == "skipped", timeout=30, what="the slot to be decided",
             processes=processes)
    assert _slot(slot) == ("skipped", "paused", False)
    history = query("SELECT trigger, status, stats FROM task_runs WHERE task = 'tick'")
    assert history == [("schedule", "skipped", {"skip_reason": "paused"})]
    assert completions("tick") == 0
