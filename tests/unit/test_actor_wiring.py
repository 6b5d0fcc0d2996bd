"""Each registry entry becomes an actor with the declared queue, schedule, limits and retry policy.

A StubBroker is enough here: this checks the declarations, not their behaviour
(tests/integration/test_worker_pipeline.py runs them on the real Redis).
"""

from __future__ import annotations

import psycopg2
import pytest
import redis
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Retries
from periodiq import PeriodiqMiddleware

from crmtasks.broker.actors import declare_actor
from crmtasks.broker.build import add_crmtasks_middleware
from crmtasks.broker.middleware import (
    DatabaseConnection,
    DatabaseReady,
    FailureAlerts,
    GracefulStop,
    JobMetrics,
    JobMutex,
    RunRecorder,
    ScheduleGuard,
    WorkerHeartbeat,
)
from crmtasks.jobs import registry
from crmtasks.scheduler.cron import UtcCron
from crmtasks.settings import load_settings

SPEC = registry.JobSpec(name="tidy_up", actor_name="tests.tidy_up", cron="*/5 * * * *", queue="workflow_io",
                         job="builtins:dict", description="test", time_limit_s=90, max_retries=4,
                         min_backoff_ms=1000, max_backoff_ms=8000)


@pytest.fixture()
def broker(tmp_path):
    broker = StubBroker()
    add_crmtasks_middleware(broker, load_settings({"CRMTASKS_HOME": str(tmp_path)}))
    yield broker
    broker.close()


def test_middleware_order(broker):
    ours = [type(m) for m in broker.middleware if type(m).__module__.startswith("crmtasks.")]
    assert ours == [FailureAlerts, DatabaseReady, ScheduleGuard, DatabaseConnection, JobMutex, RunRecorder,
                    JobMetrics, WorkerHeartbeat, GracefulStop]
    # Just before Retries, so that its after hook (run in reverse order) sees Retries' verdict.
    kinds = [type(m) for m in broker.middleware]
    assert kinds.index(FailureAlerts) + 1 == kinds.index(Retries)
    assert any(isinstance(m, PeriodiqMiddleware) for m in broker.middleware)  # keeps the periodic= option


def test_actor_options_come_from_the_registry(broker):
    actor = declare_actor(broker, SPEC, "15 3 * * *")
    assert actor.actor_name == "tests.tidy_up"
    assert actor.queue_name == "workflow_io"
    assert actor.options["periodic"] == UtcCron("15 3 * * *")
    assert actor.options["time_limit"] == 90_000
    assert (actor.options["min_backoff"], actor.options["max_backoff"]) == (1000, 8000)
    assert actor() == {}  # calls the job function named in the spec


def test_retry_policy_is_transient_faults_only(broker):
    retry_when = declare_actor(broker, SPEC, SPEC.cron).options["retry_when"]
    assert retry_when(0, redis.ConnectionError("gone"))
    assert retry_when(3, psycopg2.OperationalError("server closed the connection unexpectedly"))
    assert not retry_when(4, redis.ConnectionError("gone"))  # max_retries=4 used up
    assert not retry_when(0, ValueError("bad data"))


def test_unknown_queue_is_refused():
    with pytest.raises(ValueError, match="queue 'celery' is not one of"):
        registry.JobSpec(name="x", actor_name="x", cron="* * * * *", queue="celery", job="builtins:dict",
                          description="x", time_limit_s=1)
