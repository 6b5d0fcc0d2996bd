"""Where PostgreSQL and Redis are: the configured URLs, or embedded servers started on demand."""

from crmtasks.services.urls import database_url, redis_url

__all__ = ["database_url", "redis_url"]
