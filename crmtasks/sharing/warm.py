"""Warming the shared cache: every active user's compiled visibility, written to Redis.

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
from crmtasks.sharing.compile import compile_visibility
from crmtasks.sharing.records import read_epoch

# Entries sent to Redis per pipeline round trip.
_BATCH = 200


def warm_visibility(settings: Settings) -> dict:
    """Compile and store every active user's visibility; drop inactive users' entries.

    Returns: users_warmed, users_evicted (inactive users whose entry existed),
    keys (entries written), bytes (JSON written), epoch (at the start),
    epoch_changed (the sharing inputs changed during the run: some entries
    are already stale), duration_s.
    """
    started = time.perf_counter()
    shared = RedisVisibilityCache(get_redis(settings), settings, settings.sharing_cache_ttl_s)
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
            written += shared.put(compile_visibility(cursor, user_id), pipe)
            warmed += 1
            if warmed % _BATCH == 0:
                pipe.execute()
        pipe.execute()
        last_epoch = read_epoch(cursor)
    evicted = shared.delete(user_id for user_id, is_active in users if not is_active)
    return {
        "users_warmed": warmed, "users_evicted": evicted, "keys": warmed, "bytes": written,
        "epoch": first_epoch.number, "epoch_changed": first_epoch != last_epoch,
        "duration_s": round(time.perf_counter() - started, 3),
    }
