"""The Dramatiq broker crmtasks runs on, built from settings.

A RedisBroker (namespace = ``CRMTASKS_REDIS_PREFIX``) with Dramatiq's
default middleware (its Prometheus exporter replaced by ours, bound to
``CRMTASKS_METRICS_HOST:PORT``, see crmtasks.broker.metrics_exporter) and ours, in
this order: DatabaseReady (a worker checks, or on the embedded default
prepares, the database at boot), ScheduleGuard (periodiq's middleware,
extended: paused jobs and stale slots are skipped), DatabaseConnection (a
connection per message), JobMutex (no overlapping runs), RunRecorder (the
run history), JobMetrics (per-job Prometheus series), WorkerHeartbeat (for
``crmtasks check``, and the alert sweep), GracefulStop (a stop sent to the
whole process group lets running jobs finish). FailureAlerts sits just
before Dramatiq's Retries, so that it sees Retries' verdict on a failure.
Dramatiq calls ``after`` hooks in reverse, so a
run is recorded before the lock is freed and before its connection goes
back to the pool.
"""

from __future__ import annotations

import logging

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Prometheus as DramatiqPrometheus
from dramatiq.middleware import Retries, default_middleware

from crmtasks.broker import metrics_exporter
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
from crmtasks.services import urls as services
from crmtasks.settings import Settings


class _ResultsAreRecordedFilter(logging.Filter):
    """Drop Dramatiq's warning that a job's return value is discarded: RunRecorder stores it in task_runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned a value that is not None" not in record.getMessage()


_RESULTS_FILTER = _ResultsAreRecordedFilter()


def add_crmtasks_middleware(broker: dramatiq.Broker, settings: Settings) -> dramatiq.Broker:
    """Add crmtasks' middleware (ScheduleGuard is periodiq's, extended) before any actor is declared."""
    broker.add_middleware(DatabaseReady(settings))
    broker.add_middleware(ScheduleGuard(settings))
    broker.add_middleware(DatabaseConnection(settings))
    broker.add_middleware(JobMutex(settings))
    broker.add_middleware(RunRecorder())
    broker.add_middleware(JobMetrics())
    broker.add_middleware(WorkerHeartbeat(settings))
    broker.add_middleware(GracefulStop())
    # After hooks run in reverse order: before Retries in the list, its hook runs after Retries decided.
    broker.add_middleware(FailureAlerts(settings), before=Retries)
    logging.getLogger("dramatiq.worker.WorkerThread").addFilter(_RESULTS_FILTER)
    return broker


def build_broker(settings: Settings) -> RedisBroker:
    """A RedisBroker for ``settings`` with every middleware crmtasks needs."""
    metrics_exporter.point_workers_at(settings.exporter)
    broker = RedisBroker(url=services.redis_url(settings), namespace=settings.redis_prefix,
                         heartbeat_timeout=settings.worker_heartbeat_timeout_ms,
                         maintenance_chance=settings.broker_maintenance_chance,
                         middleware=_default_middleware())
    return add_crmtasks_middleware(broker, settings)


def _default_middleware() -> list[dramatiq.Middleware]:
    """Dramatiq's default middleware, with its Prometheus exporter replaced by crmtasks' (loopback, our port)."""
    return [metrics_exporter.Prometheus() if cls is DramatiqPrometheus else cls() for cls in default_middleware]
