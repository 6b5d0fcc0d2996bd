"""The broker's middleware end to end: a real RedisBroker, a Dramatiq worker, real PostgreSQL.

The jobs here are test jobs declared through the same actor factory as the
real ones, so what is checked is the machinery every job runs through: run
recording, retries for transient faults only, the no-overlap mutex,
connection release, schedule staleness. They are not in the registry: the
middleware act on the options each actor was declared with.
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid

import dramatiq
import pendulum
import pytest
import redis as redis_module

from crmtasks.broker.actors import declare_actor
from crmtasks.broker.middleware.job_mutex import DEFAULT_LOCK_TTL_MS, job_mutex
from crmtasks.jobs import registry
from crmtasks.models import Lead, TaskRun
from crmtasks.pg.db import database
from crmtasks.redis_client import get_redis, key
from crmtasks.settings import get_settings
from tests.integration.in_process_worker import in_process_worker

# --- test jobs -------------------------------------------------------------


def count_leads() -> dict:
    return {"leads": Lead.select().count(), "note": "counted"}


def reject_bad_data() -> dict:
    raise ValueError("lead 7 has no status")


def flaky_then_fine() -> dict:
    attempts = get_redis().incr(key(get_settings(), "test", "flaky-attempts"))
    if attempts == 1:
        raise redis_module.ConnectionError("Redis went away")
    return {"attempts": attempts}


def leave_transaction_open() -> dict:
    database.begin()
    database.execute_sql("SELECT 1")
    return {"left": "open"}


def _spec(name, job, **overrides):
    values = dict(name=name, actor_name=f"tests.{name}", cron="* * * * *", queue="default",
                  job=f"{__name__}:{job}", description=name, time_limit_s=30, max_retries=2,
                  min_backoff_ms=10, max_backoff_ms=50)
    values.update(overrides)
    return registry.JobSpec(**values)


SPECS = {
    "count_leads": _spec("count_leads", "count_leads"),
    "reject_bad_data": _spec("reject_bad_data", "reject_bad_data"),
    "flaky_then_fine": _spec("flaky_then_fine", "flaky_then_fine"),
    "leave_transaction_open": _spec("leave_transaction_open", "leave_transaction_open"),
}


@pytest.fixture()
def pipeline(crm_db, redis_client):
    # registry.JOBS keeps the real jobs: the test jobs exist only as declared actors.
    assert not set(SPECS) & set(registry.names())
    settings = get_settings()
    redis_client.delete(key(settings, "test", "flaky-attempts"))
    with in_process_worker(SPECS, threads=2) as running:
        yield running.actors, running.drain, running.broker


def _runs(task):
    return list(TaskRun.select().where(TaskRun.task == task).order_by(TaskRun.id))


def test_success_is_recorded_with_its_stats(pipeline):
    actors, drain, _ = pipeline
    Lead.create(name="Ada", status="New", created_at=datetime.datetime.now(datetime.timezone.utc),
                updated_at=datetime.datetime.now(datetime.timezone.utc))
    message = actors["count_leads"].send()
    drain()
    [run] = _runs("count_leads")
    assert (run.status, run.trigger, run.message_id) == ("succeeded", "manual", message.message_id)
    assert run.stats == {"leads": 1, "note": "counted"}
    assert run.finished_at >= run.started_at
    assert run.error is None


def test_bad_data_fails_once_and_is_dead_lettered(pipeline, redis_client):
    actors, drain, _ = pipeline
    actors["reject_bad_data"].send()
    drain()
    [run] = _runs("reject_bad_data")
    assert run.status == "failed"
    assert "ValueError: lead 7 has no status" in run.error
    assert redis_client.zcard(f"{get_settings().redis_prefix}:default.XQ") == 1


def test_transient_fault_is_retried_then_succeeds(pipeline):
    actors, drain, _ = pipeline
    actors["flaky_then_fine"].send()
    drain()
    runs = _runs("flaky_then_fine")
    assert [(r.status, r.trigger) for r in runs] == [("failed", "manual"), ("succeeded", "retry")]
    assert "ConnectionError" in runs[0].error
    assert runs[1].stats == {"attempts": 2}


def test_a_job_already_running_is_skipped_not_retried(pipeline, redis_client):
    actors, drain, _ = pipeline
    mutex = job_mutex(get_settings(), SPECS["count_leads"])
    assert mutex.acquire("another-host-run")
    try:
        actors["count_leads"].send()
        drain()
    finally:
        mutex.release("another-host-run")
    [run] = _runs("count_leads")
    assert run.status == "skipped"
    assert run.stats == {"skip_reason": "overlap"}
    assert redis_client.zcard(f"{get_settings().redis_prefix}:default.XQ") == 0


def test_lock_is_released_after_each_run(pipeline):
    actors, drain, _ = pipeline
    actors["count_leads"].send()
    drain()
    actors["count_leads"].send()
    drain()
    assert [r.status for r in _runs("count_leads")] == ["succeeded", "succeeded"]
    assert job_mutex(get_settings(), SPECS["count_leads"]).holder() is None


def test_open_transactions_and_connections_are_released(pipeline, crm_db):
    actors, drain, _ = pipeline
    for _ in range(5):  # one after the other: the mutex would skip overlapping runs
        actors["leave_transaction_open"].send()
        drain()
    assert [r.status for r in _runs("leave_transaction_open")] == ["succeeded"] * 5
    cursor = crm_db.execute_sql(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND state = 'idle in transaction' AND pid <> pg_backend_pid()")
    assert cursor.fetchone()[0] == 0


def test_scheduled_messages_are_recorded_as_schedule(pipeline):
    actors, drain, _ = pipeline
    actors["count_leads"].send_with_options(scheduled_at=str(pendulum.now()))
    drain()
    [run] = _runs("count_leads")
    assert (run.status, run.trigger) == ("succeeded", "schedule")


def test_stale_scheduled_messages_are_skipped(pipeline):
    actors, drain, _ = pipeline
    actors["count_leads"].send_with_options(scheduled_at=str(pendulum.now().subtract(minutes=10)))
    drain()
    [run] = _runs("count_leads")
    assert run.status == "skipped"
    assert run.stats == {"skip_reason": "stale"}


def test_unregistered_actors_pass_through_untouched(pipeline):
    _, drain, broker = pipeline
    seen = []

    @dramatiq.actor(broker=broker, actor_name=f"tests.plain_{uuid.uuid4().hex[:6]}")
    def plain():
        seen.append(1)

    broker.declare_actor(plain)
    plain.send()
    drain()
    assert seen == [1]
    assert TaskRun.select().count() == 0


def write_without_commit() -> dict:
    database.begin()
    Lead.create(name="uncommitted", status="New", created_at=datetime.datetime.now(datetime.timezone.utc),
                updated_at=datetime.datetime.now(datetime.timezone.utc))
    return {"wrote": 1}


SPECS["write_without_commit"] = _spec("write_without_commit", "write_without_commit")


def test_work_a_job_did_not_commit_is_rolled_back_not_committed_by_the_recorder(pipeline, crm_db):
    actors, drain, _ = pipeline
    actors["write_without_commit"].send()
    drain()
    [run] = _runs("write_without_commit")
    assert run.status == "succeeded"
    assert Lead.select().where(Lead.name == "uncommitted").count() == 0


# --- schedules you can steer ------------------------------------------------


def test_paused_job_is_skipped_by_workers_and_not_enqueued_by_schedulers(pipeline, redis_client):
    from crmtasks.broker.actors import send_for_slot
    from crmtasks.models import ScheduleSlot
    from crmtasks.scheduler import pauses

    actors, drain, _ = pipeline
    pauses.pause("count_leads", "index rebuild tonight")
    actors["count_leads"].send()  # a manual send still reaches the worker, which skips it
    drain()
    [run] = _runs("count_leads")
    assert (run.status, run.stats) == ("skipped", {"skip_reason": "paused"})
    slot = datetime.datetime(2026, 11, 29, 10, 5, tzinfo=datetime.timezone.utc)
    assert send_for_slot(actors["count_leads"], slot) is None
    recorded = ScheduleSlot.get((ScheduleSlot.task == "count_leads") & (ScheduleSlot.slot_at == slot))
    assert (recorded.state, recorded.reason) == ("skipped", "paused")
    assert redis_client.llen(f"{get_settings().redis_prefix}:default") == 0
    assert pauses.resume("count_leads") and not pauses.resume("count_leads")


def test_a_slot_is_enqueued_once_however_many_schedulers_send_it(pipeline):
    from crmtasks.models import ScheduleSlot

    actors, drain, _ = pipeline
    scheduled_at = str(pendulum.now("UTC").replace(second=0, microsecond=0))
    sent = [actors["count_leads"].send_with_options(scheduled_at=scheduled_at) for _ in range(3)]
    assert sum(message is not None for message in sent) == 1
    drain()
    [run] = _runs("count_leads")
    assert (run.status, run.trigger) == ("succeeded", "schedule")
    [slot] = ScheduleSlot.select().where(ScheduleSlot.task == "count_leads")
    assert (slot.state, slot.run_id, slot.message_id) == ("ran", run.id, run.message_id)


def test_a_scheduler_starting_after_an_outage_runs_only_the_latest_slot_once(pipeline, monkeypatch):
    """An every-minute job fires this minute: that slot is sent now and no older slot is caught up."""
    from crmtasks.models import ScheduleSlot
    from crmtasks.scheduler.boot import catch_up

    actors, drain, _ = pipeline
    monkeypatch.setattr(registry, "JOBS", (SPECS["count_leads"],))
    now = datetime.datetime.now(datetime.timezone.utc)
    minute = now.replace(second=0, microsecond=0)
    # The job last ran 4 slots ago (every minute): 3 slots were missed while no scheduler ran.
    ScheduleSlot.create(task="count_leads", slot_at=minute - datetime.timedelta(minutes=4), state="ran",
                        created_at=now, updated_at=now)
    first = catch_up(get_settings(), actors, now)
    second = catch_up(get_settings(), actors, now)  # a second scheduler starting at the same time
    assert first["count_leads"] == {"caught_up": None, "missed": 3, "sent": minute.isoformat()}
    assert second["count_leads"] == {"caught_up": None, "missed": 0, "sent": None}
    drain()
    runs = _runs("count_leads")
    assert [(r.status, r.trigger) for r in runs] == [("succeeded", "schedule")]
    states = {(s.slot_at, s.state, s.reason) for s in ScheduleSlot.select().where(ScheduleSlot.task == "count_leads")}
    assert states == {
        (minute - datetime.timedelta(minutes=4), "ran", None),
        (minute - datetime.timedelta(minutes=3), "skipped", "missed"),
        (minute - datetime.timedelta(minutes=2), "skipped", "missed"),
        (minute - datetime.timedelta(minutes=1), "skipped", "missed"),
        (minute, "ran", None),
    }


def test_scheduler_catch_up_runs_the_latest_missed_slot_once(pipeline, monkeypatch):
    """A job that does not fire this minute: its latest missed slot is caught up, once."""
    from crmtasks.models import ScheduleSlot
    from crmtasks.scheduler.boot import catch_up

    _, drain, broker = pipeline
    now = datetime.datetime.now(datetime.timezone.utc)
    minute = now.replace(second=0, microsecond=0)
    latest = minute - datetime.timedelta(minutes=2)
    spec = _spec("count_leads", "count_leads", cron=f"{latest.minute} * * * *")  # hourly, 2 minutes ago
    spec = dataclasses.replace(spec, actor_name="tests.count_leads_hourly")
    actor = declare_actor(broker, spec, spec.cron)
    monkeypatch.setattr(registry, "JOBS", (spec,))
    ScheduleSlot.create(task="count_leads", slot_at=latest - datetime.timedelta(hours=3), state="ran",
                        created_at=now, updated_at=now)
    first = catch_up(get_settings(), {"count_leads": actor}, now)
    second = catch_up(get_settings(), {"count_leads": actor}, now)
    assert first["count_leads"] == {"caught_up": latest.isoformat(), "missed": 2, "sent": None}
    assert second["count_leads"] == {"caught_up": None, "missed": 0, "sent": None}
    drain()
    runs = _runs("count_leads")
    assert [(r.status, r.trigger) for r in runs] == [("succeeded", "schedule")]
    states = {(s.slot_at, s.state, s.reason) for s in ScheduleSlot.select().where(ScheduleSlot.task == "count_leads")}
    assert states == {
        (latest - datetime.timedelta(hours=3), "ran", None),
        (latest - datetime.timedelta(hours=2), "skipped", "missed"),
        (latest - datetime.timedelta(hours=1), "skipped", "missed"),
        (latest, "ran", "catch_up"),
    }


def slow_job() -> dict:
    import time

    time.sleep(1.5)
    return {"slept": 1.5}


SPECS["slow_queue_one"] = _spec("slow_queue_one", "slow_job", overlap="queue_one")


def test_queue_one_lets_one_run_wait_and_skips_the_rest(pipeline, monkeypatch):
    from crmtasks.broker.middleware import job_mutex as job_mutex_module

    monkeypatch.setattr(job_mutex_module, "QUEUE_ONE_POLL_MS", 200)
    actors, drain, _ = pipeline
    mutex = job_mutex(get_settings(), SPECS["slow_queue_one"])
    assert mutex.acquire("run-on-another-host")
    actors["slow_queue_one"].send()  # waits in line
    actors["slow_queue_one"].send()  # line is full: skipped
    import time

    time.sleep(1.0)
    mutex.release("run-on-another-host")
    drain()
    time.sleep(0.5)
    drain()
    statuses = sorted(r.status for r in _runs("slow_queue_one"))
    assert statuses == ["skipped", "succeeded"]


# --- policy travels on the actor, not in the registry ------------------------


def report_own_lock_ttl() -> dict:
    return {"lock_pttl_ms": get_redis().pttl(key(get_settings(), "lock", "hand_declared"))}


def test_a_hand_declared_actor_runs_by_its_own_options(pipeline):
    _, drain, broker = pipeline
    actor = dramatiq.actor(report_own_lock_ttl, broker=broker, actor_name="tests.not_in_any_registry",
                           queue_name="default", max_retries=0, job_name="hand_declared", overlap="skip",
                           lock_ttl=7_000)
    assert registry.find("hand_declared") is None and registry.find(actor.actor_name) is None
    message = actor.send()
    drain()
    [run] = _runs("hand_declared")  # filed under the actor's job_name
    assert (run.status, run.message_id) == ("succeeded", message.message_id)
    # The lock existed while the job ran, with the actor's lock_ttl (7 s) and not JobMutex's fallback (11 min):
    # only an upper bound, which no slowness of the machine can break.
    assert run.stats["lock_pttl_ms"] > 0
    assert run.stats["lock_pttl_ms"] <= actor.options["lock_ttl"] < DEFAULT_LOCK_TTL_MS
    assert get_redis().exists(key(get_settings(), "lock", "hand_declared")) == 0  # and was freed


def test_the_lock_ttl_comes_from_the_time_limit(pipeline):
    _, drain, broker = pipeline
    spec = _spec("hand_declared", "report_own_lock_ttl", time_limit_s=5)
    actor = declare_actor(broker, spec, spec.cron)
    assert actor.options["lock_ttl"] == 65_000  # the time limit plus a minute
    actor.send()
    drain()
    [run] = _runs("hand_declared")
    # The lock held the time limit plus a minute, not JobMutex's fallback: an upper bound again.
    assert run.stats["lock_pttl_ms"] > 0
    assert run.stats["lock_pttl_ms"] <= actor.options["lock_ttl"] < DEFAULT_LOCK_TTL_MS


def test_an_actors_overlap_option_decides_what_a_second_run_does(pipeline, monkeypatch):
    from crmtasks.broker.middleware import job_mutex as job_mutex_module

    monkeypatch.setattr(job_mutex_module, "QUEUE_ONE_POLL_MS", 200)
    _, drain, broker = pipeline
    waits = dramatiq.actor(count_leads, broker=broker, actor_name="tests.waits_its_turn", queue_name="default",
                           max_retries=0, job_name="waits_its_turn", overlap="queue_one", lock_ttl=30_000)
    mutex = job_mutex_module.job_lock(get_settings(), "waits_its_turn", 30_000)
    assert mutex.acquire("run-on-another-host")
    waits.send()
    import time

    time.sleep(0.5)
    mutex.release("run-on-another-host")
    drain()
    time.sleep(0.5)
    drain()
    assert [r.status for r in _runs("waits_its_turn")] == ["succeeded"]  # it waited instead of being skipped
