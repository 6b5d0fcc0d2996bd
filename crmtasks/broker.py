"""The Dramatiq broker crmtasks runs on, built from settings.

A RedisBroker (namespace = ``CRMTASKS_REDIS_PREFIX``) with Dramatiq's
default middleware and ours, in this order: ScheduleGuard (periodiq's
middleware, extended: paused jobs and stale slots are skipped),
DatabaseConnection (a connection per message), JobMutex (no overlapping
runs), RunRecorder (the run history). Dramatiq calls ``after``
hooks in reverse, so a run is recorded before the lock is freed and before
its connection goes back to the pool.
"""

from __future__ import annotations

import logging

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from crmtasks import services
from crmtasks.middleware import (DatabaseConnection, JobMetrics, JobMutex, RunRecorder, ScheduleGuard,
                                 WorkerHeartbeat)
from crmtasks.settings import Settings


class _ResultsAreRecordedFilter(logging.Filter):
    """Drop Dramatiq's warning that a job's return value is discarded: RunRecorder stores it in task_runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned a value that is not None" not in record.getMessage()


_RESULTS_FILTER = _ResultsAreRecordedFilter()


def add_crmtasks_middleware(broker: dramatiq.Broker, settings: Settings) -> dramatiq.Broker:
    """Add crmtasks' middleware (ScheduleGuard is periodiq's, extended) before any actor is declared."""
    broker.add_middleware(ScheduleGuard(settings))
    broker.add_middleware(DatabaseConnection(settings))
    broker.add_middleware(JobMutex(settings))
    broker.add_middleware(RunRecorder())
    broker.add_middleware(JobMetrics())
    broker.add_middleware(WorkerHeartbeat(settings))
    logging.getLogger("dramatiq.worker.WorkerThread").addFilter(_RESULTS_FILTER)
    return broker


def build_broker(settings: Settings) -> RedisBroker:
    """A RedisBroker for ``settings`` with every middleware crmtasks needs."""
    _configure_exporter(settings)
    broker = RedisBroker(url=services.redis_url(settings), namespace=settings.redis_prefix,
                         heartbeat_timeout=settings.worker_heartbeat_timeout_ms,
                         maintenance_chance=settings.broker_maintenance_chance)
    return add_crmtasks_middleware(broker, settings)


def _configure_exporter(settings: Settings) -> None:
    """Point Dramatiq's Prometheus exporter at our address and a directory of our own.

    Dramatiq reads these from its own environment variables at import and
    binds all interfaces by default; metrics are operational data, so we bind
    loopback unless told otherwise, and keep each port's files apart so two
    worker groups on one host do not mix their series.
    """
    from dramatiq.middleware import prometheus

    prometheus.HTTP_HOST = settings.metrics_host
    prometheus.HTTP_PORT = settings.metrics_port
    metrics_dir = settings.home / "metrics" / str(settings.metrics_port)
    metrics_dir.mkdir(parents=True, exist_ok=True)
    prometheus.DB_PATH = str(metrics_dir)
