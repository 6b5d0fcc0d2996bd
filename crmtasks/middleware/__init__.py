"""Dramatiq middleware that crmtasks adds to its broker, one per module."""

from crmtasks.middleware.database_connection import DatabaseConnection
from crmtasks.middleware.job_mutex import JobMutex
from crmtasks.middleware.run_recorder import RunRecorder

__all__ = ["DatabaseConnection", "JobMutex", "RunRecorder"]
