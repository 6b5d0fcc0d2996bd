"""A slot claimed by a scheduler killed before it sent the message: the next scheduler sends it, or closes it.

The state a kill -9 between the claim and the send leaves is made with the
scheduler's own claim (``slots.claim_slot``), aged past STRANDED_AFTER_S.
Real PostgreSQL and Redis; the re-sent message is run by a real worker.
"""

from __future__ import annotations

import datetime

import pytest

from crmtasks.broker.middleware.schedule_guard import ScheduleGuard
from crmtasks.jobs import registry
from crmtasks.models import ScheduleSlot, TaskRun
from crmtasks.scheduler import slots
from crmtasks.scheduler.stranded import STRANDED_AFTER_S, settle_stranded
from crmtasks.settings import get_settings
from tests.integration.in_process_worker import in_process_worker

UTC = datetime.timezone.utc
SLOT = datetime.datetime(2026, 3, 10, 10, 0, tzinfo=UTC)  # an hourly job's slot; the next is 11:00
SPEC = registry.JobSpec(name="hourly_stranded", actor_name="tests.hourly_stranded", cron="0 * * * *",
                        queue="default", job="tests.acceptance.jobs_for_tests:tally_users",
                        description="hourly", time_limit_s=30)


@pytest.fixture()
def worker(crm_db):
    with in_process_worker({SPEC.name: SPEC}) as running:
        yield running


def _strand(crm_db, minutes_ago: float = 10) -> None:
    """What a scheduler killed after its claim and before its send leaves behind."""
    assert slots.claim_slot(SPEC.name, SLOT)
    crm_db.execute_sql("UPDATE schedule_slots SET created_at = now() - %s * interval '1 minute', "
                       "updated_at = now() - %s * interval '1 minute' WHERE task = %s",
                       (minutes_ago, minutes_ago, SPEC.name))


def _queued(worker) -> int:
    broker = worker.broker
    return broker.client.hlen(f"{broker.namespace}:default.msgs")


def _slot():
    row = ScheduleSlot.get((ScheduleSlot.task == SPEC.name) & (ScheduleSlot.slot_at == SLOT))
    return row.state, row.reason, row.message_id


def test_a_current_stranded_slot_is_sent_once_and_runs(worker, crm_db):
    _strand(crm_db)
    now = SLOT + datetime.timedelta(minutes=20)
    guard = next(m for m in worker.broker.middleware if isinstance(m, ScheduleGuard))
    guard.clock = lambda: now
    assert settle_stranded(get_settings(), dict(worker.actors), now)["sent"] == [f"{SPEC.name} {SLOT.isoformat()}"]
    # A second scheduler starting now finds nothing to do: the slot was taken over (or has run already).
    assert settle_stranded(get_settings(), dict(worker.actors), now) == {"sent": [], "missed": [], "present": []}
    worker.drain()
    state, reason, message_id = _slot()
    assert (state, reason) == ("ran", None)
    [run] = TaskRun.select().where(TaskRun.task == SPEC.name)
    assert (run.trigger, run.status, run.message_id) == ("schedule", "succeeded", message_id)
    assert _queued(worker) == 0


def test_a_stranded_slot_whose_next_slot_came_is_closed_as_missed(worker, crm_db):
    _strand(crm_db)
    outcome = settle_stranded(get_settings(), dict(worker.actors), SLOT + datetime.timedelta(hours=3))
    assert outcome["missed"] == [f"{SPEC.name} {SLOT.isoformat()}"] and outcome["sent"] == []
    assert _slot()[:2] == ("skipped", "missed")
    assert _queued(worker) == 0


def test_a_slot_whose_message_was_sent_is_left_alone(worker, crm_db):
    """Killed after the send but before recording the message id: the message is in Redis; nothing is sent again."""
    worker.worker.stop()
    message = worker.actors[SPEC.name].send_with_options(scheduled_at=SLOT.isoformat())
    assert message is not None
    crm_db.execute_sql("UPDATE schedule_slots SET message_id = NULL, updated_at = now() - interval '10 minutes' "
                       "WHERE task = %s", (SPEC.name,))
    outcome = settle_stranded(get_settings(), dict(worker.actors), SLOT + datetime.timedelta(minutes=20))
    assert outcome == {"sent": [], "missed": [], "present": [f"{SPEC.name} {SLOT.isoformat()}"]}
    assert _queued(worker) == 1


def test_a_fresh_claim_is_not_taken_for_a_stranded_one(worker, crm_db):
    """A live scheduler is between its claim and its send: too recent to judge."""
    _strand(crm_db, minutes_ago=STRANDED_AFTER_S / 60 / 2)
    now = datetime.datetime.now(UTC)
    assert settle_stranded(get_settings(), dict(worker.actors), now) == {"sent": [], "missed": [], "present": []}
    assert _slot()[0] == "enqueued" and _queued(worker) == 0
