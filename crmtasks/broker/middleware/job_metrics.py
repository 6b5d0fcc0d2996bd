"""Per-job Prometheus metrics: last success time, duration and outcome of each run.

Dramatiq's Prometheus middleware exports the queue-level metrics and serves
them; these per-job series join them through the same multiprocess
directory. prometheus_client is imported at the first message, after
Dramatiq set up that directory (importing it earlier would make the
metrics process-local and invisible to the exporter). Series are labelled
with the actor's ``job_name`` option; other actors get none.
"""

from __future__ import annotations

import threading
import time

import dramatiq

from crmtasks.broker.middleware.fail_closed import SKIP_REASON_OPTION
from crmtasks.broker.options import JOB_NAME_OPTION, job_options
from crmtasks.runs.status import RunStatus, SkipReason

_metrics: dict | None = None
_metrics_lock = threading.Lock()


def _job_metrics() -> dict:
    global _metrics
    with _metrics_lock:
        if _metrics is None:
            import prometheus_client as prom

            _metrics = {
                "last_success": prom.Gauge("crmtasks_job_last_success_timestamp_seconds",
                                           "Unix time of the job's last successful run.", ["task"],
                                           multiprocess_mode="max"),
                "duration": prom.Histogram("crmtasks_job_duration_seconds", "Wall-clock seconds of a job's runs.",
                                           ["task"], buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)),
                "runs": prom.Counter("crmtasks_job_runs_total", "Runs of a job by outcome.", ["task", "outcome"]),
            }
    return _metrics


class JobMetrics(dramatiq.Middleware):
    def __init__(self) -> None:
        self._started = threading.local()

    @property
    def actor_options(self) -> set[str]:
        return {JOB_NAME_OPTION}

    @staticmethod
    def _task(broker, message) -> str | None:
        options = job_options(broker, message)
        return options[JOB_NAME_OPTION] if options is not None else None

    def before_process_message(self, broker, message):
        if self._task(broker, message) is not None:
            self._started.value = (message.message_id, time.monotonic())

    def after_process_message(self, broker, message, *, result=None, exception=None):
        task = self._task(broker, message)
        started = getattr(self._started, "value", None)
        if task is None or started is None or started[0] != message.message_id:
            return
        metrics = _job_metrics()
        metrics["duration"].labels(task).observe(time.monotonic() - started[1])
        metrics["runs"].labels(task, RunStatus.FAILED if exception else RunStatus.SUCCEEDED).inc()
        if exception is None:
            metrics["last_success"].labels(task).set(time.time())

    def after_skip_message(self, broker, message):
        task = self._task(broker, message)
        if task is not None:
            reason = message.options.get(SKIP_REASON_OPTION, SkipReason.STALE)
            _job_metrics()["runs"].labels(task, f"{RunStatus.SKIPPED}_{reason}").inc()
