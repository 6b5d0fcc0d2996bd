"""Where compiled visibilities are kept between checks: this process's memory, then Redis.

Neither tier is ever trusted on its own: an entry is used only when its
epoch token equals the token the caller just read from PostgreSQL in the
same round trip as the record (crmtasks.sharing.records), so an entry made
stale by a change committed before that read is never used, whatever its
age. Staleness is detected, not prevented: there is nothing to invalidate.

- ``LocalVisibilityCache``: an LRU dict per process (thread-safe), the
  fastest path: a warm check costs one PostgreSQL round trip.
- ``RedisVisibilityCache``: shared by every process, filled nightly by the
  ``warm_caches`` job and on every miss; entries expire after a TTL (memory
  only: the epoch, not the TTL, keeps them correct).

A Redis error is logged and treated as a miss: the visibility is then
compiled from the database, slower but exact.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Iterable

import redis

from crmtasks.redis_client import key
from crmtasks.settings import Settings
from crmtasks.sharing.visibility import Epoch, Visibility

logger = logging.getLogger(__name__)


def visibility_key(settings: Settings, user_id: int) -> str:
    """Redis key of a user's compiled visibility, e.g. ``crmtasks:sharing:visibility:42``."""
    return key(settings, "sharing", "visibility", str(int(user_id)))


class LocalVisibilityCache:
    """The last compiled visibility of up to ``max_users`` users, least recently used evicted first.

    Parameters:
      max_users(int): Entries kept (one per user; each holds the user's owner id sets).
    """

    def __init__(self, max_users: int) -> None:
        self.max_users = max_users
        self._entries: collections.OrderedDict[int, Visibility] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, user_id: int, epoch: Epoch) -> Visibility | None:
        with self._lock:
            entry = self._entries.get(user_id)
            if entry is None or entry.epoch != epoch:
                return None
            self._entries.move_to_end(user_id)
            return entry

    def put(self, visibility: Visibility) -> None:
        with self._lock:
            self._entries[visibility.user_id] = visibility
            self._entries.move_to_end(visibility.user_id)
            while len(self._entries) > self.max_users:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class RedisVisibilityCache:
    """Compiled visibilities in Redis, as JSON (crmtasks.sharing.visibility.Visibility.to_json).

    Parameters:
      client(redis.Redis): The Redis client.
      settings(Settings): For the key prefix.
      ttl_s(int): Seconds an entry lives (longer than the warm-up period, so warmed entries last until the next run).
    """

    def __init__(self, client: redis.Redis, settings: Settings, ttl_s: int) -> None:
        self.client = client
        self.settings = settings
        self.ttl_s = ttl_s

    def get(self, user_id: int, epoch: Epoch) -> Visibility | None:
        raw = self.client.get(visibility_key(self.settings, user_id))
        if raw is None:
            return None
        entry = Visibility.from_json(raw)
        if entry is None or entry.user_id != user_id or entry.epoch != epoch:
            return None
        return entry

    def put(self, visibility: Visibility, pipe=None) -> int:
        """Store ``visibility`` (in ``pipe`` when given); returns the bytes written.

        A slower writer may overwrite a newer entry with an older one; readers
        then find its epoch stale and compile again: time lost, never exactness.
        """
        value = visibility.to_json().encode()
        (pipe or self.client).set(visibility_key(self.settings, visibility.user_id), value, ex=self.ttl_s)
        return len(value)

    def delete(self, user_ids: Iterable[int]) -> int:
        """Remove the entries of ``user_ids``; returns how many existed."""
        keys = [visibility_key(self.settings, user_id) for user_id in user_ids]
        removed = 0
        for start in range(0, len(keys), 500):
            removed += self.client.delete(*keys[start:start + 500])
        return removed


class VisibilityCache:
    """The two tiers together: memory first, then Redis (a Redis hit is copied into memory).

    Parameters:
      local(LocalVisibilityCache|None): This process's tier; None to skip it.
      shared(RedisVisibilityCache|None): The Redis tier; None to skip it.

    ``counts`` tells how lookups went (local_hits, redis_hits, misses, redis_errors).
    """

    def __init__(self, local: LocalVisibilityCache | None, shared: RedisVisibilityCache | None) -> None:
        self.local = local
        self.shared = shared
        self.counts = collections.Counter()

    def get(self, user_id: int, epoch: Epoch) -> Visibility | None:
        if self.local is not None:
            entry = self.local.get(user_id, epoch)
            if entry is not None:
                self.counts["local_hits"] += 1
                return entry
        if self.shared is not None:
            try:
                entry = self.shared.get(user_id, epoch)
            except redis.RedisError as error:
                self.counts["redis_errors"] += 1
                logger.warning("sharing cache: Redis read failed, compiling instead: %s", error)
                entry = None
            if entry is not None:
                self.counts["redis_hits"] += 1
                if self.local is not None:
                    self.local.put(entry)
                return entry
        self.counts["misses"] += 1
        return None

    def put(self, visibility: Visibility) -> None:
        if self.local is not None:
            self.local.put(visibility)
        if self.shared is not None:
            try:
                self.shared.put(visibility)
            except redis.RedisError as error:
                self.counts["redis_errors"] += 1
                logger.warning("sharing cache: Redis write failed: %s", error)
