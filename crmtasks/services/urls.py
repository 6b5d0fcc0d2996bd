"""Where the database and Redis are: the configured URLs, or the embedded servers.

Resolving starts the embedded servers when needed (shared by every process
on the machine through ``CRMTASKS_HOME``), so call these functions when a
connection is about to be made, never at import time.
"""

from __future__ import annotations

import functools

from crmtasks.services import embedded
from crmtasks.settings import Settings, SettingsError


@functools.lru_cache(maxsize=4)
def database_url(settings: Settings) -> str:
    """The libpq URL of the CRM database (starts the embedded PostgreSQL if none is configured)."""
    if settings.database_url:
        return settings.database_url
    _make_home(settings)
    return embedded.ensure_postgres(settings.home)


@functools.lru_cache(maxsize=4)
def redis_url(settings: Settings) -> str:
    """The URL of the Redis server (starts the embedded Redis if none is configured)."""
    if settings.redis_url:
        return settings.redis_url
    _make_home(settings)
    return embedded.ensure_redis(settings.home)


def _make_home(settings: Settings) -> None:
    """Create CRMTASKS_HOME for the embedded servers; SettingsError naming it when that is not possible."""
    try:
        settings.home.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SettingsError("CRMTASKS_HOME", f"cannot create {settings.home} for the embedded servers: "
                                             f"{error.strerror or error}") from None
