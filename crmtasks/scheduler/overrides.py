"""Which running schedulers follow an environment override instead of the stored schedule.

A scheduler publishes the jobs ``CRMTASKS_SCHEDULE_<TASK>`` sets in its
environment in its heartbeat (``schedule_overrides``), so the CLI and the
dashboard, which run with environments of their own, can say where a stored
schedule is not followed.
"""

from __future__ import annotations

import logging

import redis

from crmtasks.broker import heartbeats
from crmtasks.settings import Settings

logger = logging.getLogger(__name__)


def overriding_schedulers(settings: Settings) -> dict[str, list[str]] | None:
    """``{task: ["host:pid", ...]}`` of live schedulers overriding each task; None when Redis cannot be read."""
    try:
        schedulers = heartbeats.alive(settings, "scheduler")
    except redis.RedisError as error:
        logger.warning("schedulers' environment overrides not read: %s", error)
        return None
    found: dict[str, list[str]] = {}
    for scheduler in schedulers:
        for task in scheduler.get("schedule_overrides", ()):
            found.setdefault(task, []).append(f"{scheduler.get('host')}:{scheduler.get('pid')}")
    return {task: sorted(where) for task, where in found.items()}
