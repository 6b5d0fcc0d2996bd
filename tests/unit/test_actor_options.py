"""A job's policy travels on its actor: middleware declare the options they read and act on them.

No registry lookups here: the registry is emptied, and the middleware and
the scheduler's send still know each job from its actor's options.
A StubBroker and in-memory stand-ins for Redis and PostgreSQL are enough.
"""

from __future__ import annotations

import datetime

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import SkipMessage

from crmtasks.broker import actors as actors_module
from crmtasks.broker.actors import declare_actor, send_for_slot
from crmtasks.broker.build import add_crmtasks_middleware
from crmtasks.broker.holders import LockHolder
from crmtasks.broker.middleware import JobMetrics, JobMutex, RunRecorder, ScheduleGuard
from crmtasks.broker.middleware import job_mutex as job_mutex_module
from crmtasks.broker.middleware.job_mutex import SKIP_REASON_OPTION
from crmtasks.broker.options import (
    JOB_NAME_OPTION,
    LOCK_TTL_OPTION,
    OVERLAP_OPTION,
    job_options,
)
from crmtasks.jobs import registry
from crmtasks.settings import load_settings

SPEC = registry.JobSpec(name="tidy_up", actor_name="tests.tidy_up", cron="*/5 * * * *", queue="workflow_io",
                         job="builtins:dict", description="test", time_limit_s=90, overlap="queue_one")


@pytest.fixture()
def settings(tmp_path):
    return load_settings({"CRMTASKS_HOME": str(tmp_path)})


@pytest.fixture()
def broker(settings, monkeypatch):
    monkeypatch.setattr(registry, "JOBS", ())  # nothing may be looked up there
    broker = StubBroker()
    add_crmtasks_middleware(broker, settings)
    yield broker
    broker.close()


def _middleware(broker, kind):
    [found] = [m for m in broker.middleware if isinstance(m, kind)]
    return found


def test_declare_actor_sets_the_options_crmtasks_middleware_read(broker):
    actor = declare_actor(broker, SPEC, SPEC.cron)
    assert actor.options[JOB_NAME_OPTION] == "tidy_up"
    assert actor.options[OVERLAP_OPTION] == "queue_one"
    assert actor.options[LOCK_TTL_OPTION] == 150_000  # the 90 s time limit plus a minute, in ms


def test_each_middleware_declares_the_options_it_reads(broker):
    assert _middleware(broker, JobMutex).actor_options == {"job_name", "overlap", "lock_ttl"}
    assert _middleware(broker, RunRecorder).actor_options == {"job_name"}
    assert _middleware(broker, JobMetrics).actor_options == {"job_name"}
    assert _middleware(broker, ScheduleGuard).actor_options == {"periodic", "job_name"}
    assert {"job_name", "overlap", "lock_ttl", "periodic"} <= broker.actor_options


def test_a_broker_without_crmtasks_middleware_refuses_the_options():
    broker = StubBroker()
    try:
        with pytest.raises(ValueError, match="actor options are undefined"):
            dramatiq.actor(dict, broker=broker, job_name="tidy_up")
    finally:
        broker.close()


def test_job_options_tell_jobs_from_other_actors(broker):
    job = dramatiq.actor(dict, broker=broker, actor_name="tests.job", job_name="a_job")
    plain = dramatiq.actor(dict, broker=broker, actor_name="tests.plain")
    assert job_options(broker, job.message())[JOB_NAME_OPTION] == "a_job"
    assert job_options(broker, plain.message()) is None
    stranger = dramatiq.Message(queue_name="default", actor_name="tests.never_declared", args=(), kwargs={},
                                options={})
    assert job_options(broker, stranger) is None


class _HeldLock:
    """An in-memory RedisMutex held by another run, recording what was asked of it."""

    def __init__(self, calls: list, name: str, ttl_ms: int, held: bool) -> None:
        self.calls, self.name, self.ttl_ms, self.held = calls, name, ttl_ms, held

    def acquire(self, holder) -> bool:
        self.calls.append(("acquire", self.name, self.ttl_ms))
        return not self.held

    def holder(self) -> LockHolder | None:
        return LockHolder(token="run-on-another-host") if self.held else None  # names no process: alive

    def release(self, holder) -> bool:
        self.calls.append(("release", self.name, self.ttl_ms))
        return True


@pytest.fixture()
def locks(monkeypatch):
    """The job's lock is held elsewhere; its place in line is free. Yields the calls made."""
    calls: list = []
    monkeypatch.setattr(job_mutex_module, "job_lock", lambda settings, name, ttl: _HeldLock(calls, name, ttl, True))
    monkeypatch.setattr(job_mutex_module, "waiting_slot",
                        lambda settings, name, ttl: _HeldLock(calls, "line:" + name, ttl, False))
    return calls


@pytest.mark.parametrize(("overlap", "reason", "requeued"), [("skip", "overlap", 0), ("queue_one", "queued", 1)])
def test_job_mutex_acts_on_the_actors_options(broker, locks, overlap, reason, requeued):
    actor = dramatiq.actor(dict, broker=broker, actor_name="tests.by_hand", queue_name="default",
                           job_name="by_hand", overlap=overlap, lock_ttl=4_000)
    message = actor.message()
    with pytest.raises(SkipMessage):
        _middleware(broker, JobMutex).before_process_message(broker, message)
    assert message.options[SKIP_REASON_OPTION] == reason
    assert locks[0] == ("acquire", "by_hand", 4_000)  # the actor's job name and lock TTL
    assert len(broker.queues["default.DQ"].queue) == requeued


def test_job_mutex_lets_other_actors_pass(broker, locks):
    plain = dramatiq.actor(dict, broker=broker, actor_name="tests.plain")
    _middleware(broker, JobMutex).before_process_message(broker, plain.message())
    assert locks == []


def test_a_scheduled_send_claims_the_slot_under_the_actors_job_name(broker, monkeypatch):
    claimed = []
    monkeypatch.setattr(actors_module.pauses, "is_paused", lambda task: False)
    monkeypatch.setattr(actors_module.slots, "claim_slot",
                        lambda task, slot, **kw: claimed.append((task, slot)) or True)
    monkeypatch.setattr(actors_module.slots, "update_slot", lambda task, slot, **kw: None)
    actor = declare_actor(broker, SPEC, SPEC.cron)
    slot = datetime.datetime(2026, 3, 29, 2, 30, tzinfo=datetime.timezone.utc)
    message = send_for_slot(actor, slot)
    assert claimed == [("tidy_up", slot)]
    assert message.options["crmtasks_slot"] == slot.isoformat()
