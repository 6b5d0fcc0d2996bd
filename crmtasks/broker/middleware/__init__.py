"""Dramatiq middleware that crmtasks adds to its broker, one per module."""

from crmtasks.broker.middleware.database_connection import DatabaseConnection
from crmtasks.broker.middleware.database_ready import DatabaseReady
from crmtasks.broker.middleware.failure_alerts import FailureAlerts
from crmtasks.broker.middleware.graceful_stop import GracefulStop
from crmtasks.broker.middleware.job_metrics import JobMetrics
from crmtasks.broker.middleware.job_mutex import JobMutex
from crmtasks.broker.middleware.run_recorder import RunRecorder
from crmtasks.broker.middleware.schedule_guard import ScheduleGuard
from crmtasks.broker.middleware.worker_heartbeat import WorkerHeartbeat

__all__ = ["DatabaseConnection", "DatabaseReady", "FailureAlerts", "GracefulStop", "JobMetrics", "JobMutex", "RunRecorder", "ScheduleGuard", "WorkerHeartbeat"]
