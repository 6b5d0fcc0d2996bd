"""The Redis client of this process and the key names crmtasks writes.

Every key starts with ``CRMTASKS_REDIS_PREFIX`` so that several deployments
(or test runs) can share one Redis server without seeing each other's keys.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from crmtasks.services import urls as services
from crmtasks.settings import Settings, get_settings

logger = logging.getLogger(__name__)
_clients: dict[tuple[int, Settings], redis.Redis] = {}
T = TypeVar("T")


def get_redis(settings: Settings | None = None) -> redis.Redis:
    """A client for the configured (or embedded) Redis; one per process, never shared across fork."""
    settings = settings or get_settings()
    owner = (os.getpid(), settings)
    client = _clients.get(owner)
    if client is None:
        client = redis.Redis.from_url(services.redis_url(settings), socket_timeout=10, socket_connect_timeout=5)
        _clients.clear()
        _clients[owner] = client
    return client


def key(settings: Settings, *parts: str) -> str:
    """A Redis key in this deployment's namespace, e.g. ``crmtasks:lock:precompute_facets``."""
    return ":".join((settings.redis_prefix, *parts))


def patiently(operation: Callable[[], T], *, what: str, timeout_s: float = 30.0) -> T:
    """Return ``operation()``, trying it again while Redis is unreachable, for up to ``timeout_s`` seconds.

    For the few Redis calls that must not be lost to a Redis restart (taking
    and freeing a job's lock): a freed lock that was not freed blocks the
    job for its whole time limit. The operation must be safe to repeat.
    Waits 0.2 s, then doubles up to 2 s between attempts; the last error is
    raised when the time is up.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.2
    while True:
        try:
            return operation()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            if time.monotonic() + delay > deadline:
                raise
            logger.warning("%s: Redis is unreachable (%s); trying again in %.1f s", what, error, delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
