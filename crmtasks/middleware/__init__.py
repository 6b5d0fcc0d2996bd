"""Dramatiq middleware that crmtasks adds to its broker, one per module."""

from crmtasks.middleware.database_connection import DatabaseConnection
from crmtasks.middleware.database_ready import DatabaseReady
from crmtasks.middleware.graceful_stop import GracefulStop
from crmtasks.middleware.job_metrics import JobMetrics
from crmtasks.middleware.job_mutex import JobMutex
from crmtasks.middleware.run_recorder import RunRecorder
from crmtasks.middleware.schedule_guard import ScheduleGuard
from crmtasks.middleware.worker_heartbeat import WorkerHeartbeat

__all__ = ["DatabaseConnection", "DatabaseReady", "GracefulStop", "JobMetrics", "JobMutex", "RunRecorder", "ScheduleGuard", "WorkerHeartbeat"]
