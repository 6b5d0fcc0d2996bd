"""The Dramatiq broker crmtasks runs on, built from settings.

A RedisBroker (namespace = ``CRMTASKS_REDIS_PREFIX``) with Dramatiq's
default middleware, periodiq's scheduler middleware, and ours, in this
order: DatabaseConnection (a connection per message), JobMutex (no
overlapping runs), RunRecorder (the run history). Dramatiq calls ``after``
hooks in reverse, so a run is recorded before the lock is freed and before
its connection goes back to the pool.
"""

from __future__ import annotations

import logging

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from periodiq import PeriodiqMiddleware

from crmtasks import services
from crmtasks.middleware import DatabaseConnection, JobMutex, RunRecorder
from crmtasks.settings import Settings

# Seconds after its slot that a scheduled message is still worth running.
SCHEDULE_SKIP_DELAY_S = 30


class _ResultsAreRecordedFilter(logging.Filter):
    """Drop Dramatiq's warning that a job's return value is discarded: RunRecorder stores it in task_runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned a value that is not None" not in record.getMessage()


_RESULTS_FILTER = _ResultsAreRecordedFilter()


def add_crmtasks_middleware(broker: dramatiq.Broker, settings: Settings) -> dramatiq.Broker:
    """Add periodiq's and crmtasks' middleware to ``broker`` (before any actor is declared)."""
    broker.add_middleware(PeriodiqMiddleware(skip_delay=SCHEDULE_SKIP_DELAY_S))
    broker.add_middleware(DatabaseConnection(settings))
    broker.add_middleware(JobMutex(settings))
    broker.add_middleware(RunRecorder())
    logging.getLogger("dramatiq.worker.WorkerThread").addFilter(_RESULTS_FILTER)
    return broker


def build_broker(settings: Settings) -> RedisBroker:
    """A RedisBroker for ``settings`` with every middleware crmtasks needs."""
    broker = RedisBroker(url=services.redis_url(settings), namespace=settings.redis_prefix)
    return add_crmtasks_middleware(broker, settings)
