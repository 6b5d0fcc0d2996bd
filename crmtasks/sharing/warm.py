"""Warming both tiers: every active user's compiled visibility, written to Redis and to this process's memory.

Redis serves every process (a new process's first check of a user needs
no compile); the memory tier serves the process that runs the warm-up (a
web process calling ``warm_visibility`` at start: every check it makes; a
worker: the jobs it runs), up to CRMTASKS_SHARING_LOCAL_CACHE_USERS users.
A warmed entry is tagged with the epoch it was compiled at like any other;
if the sharing inputs change after the warm-up, readers find the tag stale
and compile again (exact, just not warm). Idempotent: a re-run overwrites
the same keys; safe to kill at any point (every entry is whole or absent).
"""

from __future__ import annotations

import time

from crmtasks.pg import db
from crmtasks.redis_client import get_redis
from crmtasks.settings import Settings
from crmtasks.sharing.cache import RedisVisibilityCache
from crmtasks.sharing.checker import AccessChecker
from crmtasks.sharing.compile import compile_visibility
from crmtasks.sharing.process import checker as process_checker
from crmtasks.sharing.records import read_epoch

# Entries sent to Redis per pipeline round trip.
_BATCH = 200


def warm_visibility(settings: Settings, checker: AccessChecker | None = None) -> dict:
    """Compile every active user's visibility into Redis and into ``checker``'s memory tier; drop inactive users' entries.

    Parameters:
      settings(Settings): Redis prefix and TTL.
      checker(AccessChecker|None): Whose memory tier to fill (default: this process's checker).

    Returns: users_warmed, users_evicted (inactive users whose Redis entry
    existed), keys (Redis entries written), bytes (JSON written), memory_users
    (entries in the memory tier afterwards; its capacity is memory_capacity),
    consistency, epoch (at the start), epoch_changed (the sharing inputs
    changed during the run: some entries are already stale), duration_s.
    """
    started = time.perf_counter()
    shared = RedisVisibilityCache(get_redis(settings), settings, settings.sharing_cache_ttl_s)
    checker = checker or process_checker()
    local = checker.cache.local if checker.cache is not None else None
    written = 0
    warmed = 0
    with db.connection() as database, database.connection().cursor() as cursor:
        first_epoch = read_epoch(cursor)
        cursor.execute("SELECT id, is_active FROM users ORDER BY id")
        users = cursor.fetchall()
        pipe = shared.client.pipeline(transaction=False)
        for user_id, is_active in users:
            if not is_active:
                continue
            visibility = compile_visibility(cursor, user_id)
            written += shared.put(visibility, pipe)
            if local is not None:
                local.put(visibility)
            warmed += 1
            if warmed % _BATCH == 0:
                pipe.execute()
        pipe.execute()
        last_epoch = read_epoch(cursor)
    evicted = shared.delete(user_id for user_id, is_active in users if not is_active)
    return {
        "users_warmed": warmed, "users_evicted": evicted, "keys": warmed, "bytes": written,
        "memory_users": len(local) if local is not None else 0,
        "memory_capacity": local.max_users if local is not None else 0, "consistency": checker.consistency,
        "epoch": first_epoch.number, "epoch_changed": first_epoch != last_epoch,
        "duration_s": round(time.perf_counter() - started, 3),
    }
