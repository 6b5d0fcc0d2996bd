"""This process's checker: built from the settings, replaced after fork, closed at exit.

``make_checker`` builds a checker with the cache tiers and the consistency
asked for (the bench and tests build several side by side); ``checker()`` is
the one the module-level API uses. A checker never crosses fork(): the
child builds its own on first use (and, in notify mode, its own listener).
"""

from __future__ import annotations

import atexit
import os

from crmtasks.redis_client import get_redis
from crmtasks.services import urls
from crmtasks.settings import SHARING_CONSISTENCIES, Settings, get_settings
from crmtasks.sharing.cache import (
    LocalRecordCache,
    LocalVisibilityCache,
    RedisVisibilityCache,
    VisibilityCache,
)
from crmtasks.sharing.checker import AccessChecker
from crmtasks.sharing.listener import SharingListener

_checker: tuple[int, Settings, AccessChecker] | None = None


def make_checker(settings: Settings, *, local: bool = True, shared: bool = True,
                 consistency: str | None = None) -> AccessChecker:
    """A checker with the cache tiers asked for.

    Parameters:
      settings(Settings): Sizes of the memory tiers, Redis TTL, the database.
      local(bool): Keep visibilities (and, in notify mode, record facts) in this process's memory.
      shared(bool): Use the Redis tier. Both off: compile on every call (the uncached baseline).
      consistency(str|None): ``exact`` or ``notify``; None: CRMTASKS_SHARING_CONSISTENCY. A notify
        checker's listener (one PostgreSQL connection) starts on first use; ``close()`` stops it.
    """
    consistency = consistency or settings.sharing_consistency
    if consistency not in SHARING_CONSISTENCIES:
        raise ValueError(f"unknown consistency {consistency!r}; expected one of {', '.join(SHARING_CONSISTENCIES)}")
    local_tier = LocalVisibilityCache(settings.sharing_local_cache_users) \
        if local and settings.sharing_local_cache_users > 0 else None
    shared_tier = RedisVisibilityCache(get_redis(settings), settings, settings.sharing_cache_ttl_s) if shared else None
    cache = None if local_tier is None and shared_tier is None else VisibilityCache(local_tier, shared_tier)
    if consistency == "exact":
        return AccessChecker(cache=cache)
    records = LocalRecordCache(settings.sharing_local_cache_records if local else 0)
    return AccessChecker(cache=cache, listener=SharingListener(urls.database_url(settings), records))


def checker() -> AccessChecker:
    """This process's checker (a new one after fork or when the settings change; the old one is closed)."""
    global _checker
    settings = get_settings()
    # ``is`` first: comparing two Settings field by field costs more than a warm check's own Python work.
    if _checker is None or _checker[0] != os.getpid() or (_checker[1] is not settings and _checker[1] != settings):
        if _checker is not None and _checker[0] == os.getpid():
            _checker[2].close()
        _checker = (os.getpid(), settings, make_checker(settings))
    return _checker[2]


@atexit.register
def _close_at_exit() -> None:
    if _checker is not None and _checker[0] == os.getpid():
        _checker[2].close()
