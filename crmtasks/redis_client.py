"""The Redis client of this process and the key names crmtasks writes.

Every key starts with ``CRMTASKS_REDIS_PREFIX`` so that several deployments
(or test runs) can share one Redis server without seeing each other's keys.
"""

from __future__ import annotations

import os

import redis

from crmtasks import services
from crmtasks.settings import Settings, get_settings

_clients: dict[tuple[int, Settings], redis.Redis] = {}


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
