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

In ``notify`` mode a third store, ``LocalRecordCache``, keeps the sharing
fields of recently checked records. Unlike visibilities they carry no epoch:
they are trusted only while crmtasks.sharing.listener is listening, and
forgotten when a notification names them.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Iterable

import redis

from crmtasks.redis_client import key
from crmtasks.settings import Settings
from crmtasks.sharing.entities import ENTITIES
from crmtasks.sharing.visibility import Epoch, RecordFacts, Visibility

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

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, user_id: int, epoch: Epoch) -> Visibility | None:
        with self._lock:
            entry = self._entries.get(user_id)
            if entry is None or entry.epoch != epoch:
                return None
            self._entries.move_to_end(user_id)
            return entry

    def current(self, user_id: int, token: str) -> Visibility | None:
        """The entry of ``user_id`` if it was compiled at the epoch whose token is ``token``, else None."""
        with self._lock:
            entry = self._entries.get(user_id)
            if entry is None or entry.epoch.token != token:
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

    def current(self, user_id: int, token: str) -> Visibility | None:
        """The memory tier's entry of ``user_id`` at the epoch of ``token`` (the warm path: no Redis, no
        Epoch built), else None without counting a miss: the caller then goes through ``get``."""
        if self.local is None:
            return None
        entry = self.local.current(user_id, token)
        if entry is not None:
            self.counts["local_hits"] += 1
        return entry

    def put(self, visibility: Visibility) -> None:
        if self.local is not None:
            self.local.put(visibility)
        if self.shared is not None:
            try:
                self.shared.put(visibility)
            except redis.RedisError as error:
                self.counts["redis_errors"] += 1
                logger.warning("sharing cache: Redis write failed: %s", error)


# Key prefix of the account owners kept for contacts and deals (entity names are table names: no clash).
_ACCOUNT_OWNER = "account_owner"
_ABSENT = object()


class LocalRecordCache:
    """The sharing fields of up to ``max_records`` records, least recently used evicted first.

    Parameters:
      max_records(int): Entries kept: one per record, plus one per account
        whose owner a contact or deal check needed.

    A fill must never put back what a notification has just removed: the
    caller takes ``generation(entity)`` before its database read and passes
    it to ``put_many``, which drops the facts if that entity (or accounts,
    whose owners children carry) was invalidated in between, or everything
    was cleared. Thread-safe; ``lock`` (reentrant) is held by the listener
    while it applies one batch of notifications, so a reader holding it sees
    a batch applied whole or not at all.
    """

    def __init__(self, max_records: int) -> None:
        self.max_records = max_records
        self._entries: collections.OrderedDict[tuple[str, int], object] = collections.OrderedDict()
        self._invalidations: collections.Counter = collections.Counter()
        self._cleared = 0
        self.lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._entries)

    def generation(self, entity: str) -> tuple[int, int, int]:
        """A token that changes whenever facts of ``entity`` read before now may have become stale."""
        with self.lock:
            return self._cleared, self._invalidations[entity], self._invalidations["accounts"]

    def get_many(self, entity: str, record_ids) -> dict[int, RecordFacts] | None:
        """The facts of every one of ``record_ids``, or None when any is not kept."""
        child = ENTITIES[entity].account_column is not None
        found = {}
        with self.lock:
            entries = self._entries
            for record_id in record_ids:
                facts = entries.get((entity, record_id))
                if facts is None:
                    return None
                entries.move_to_end((entity, record_id))
                if child and facts.account_id is not None:
                    owner = entries.get((_ACCOUNT_OWNER, facts.account_id), _ABSENT)
                    if owner is _ABSENT:
                        return None
                    facts = RecordFacts(facts.owner_id, facts.fields, owner, facts.account_id)
                found[record_id] = facts
        return found

    def put_many(self, entity: str, facts: dict[int, RecordFacts], generation: tuple[int, int, int]) -> bool:
        """Keep ``facts`` (read after ``generation`` was taken); False when they were dropped as possibly stale."""
        if self.max_records <= 0:
            return False
        with self.lock:
            if generation != (self._cleared, self._invalidations[entity], self._invalidations["accounts"]):
                return False
            for record_id, record in facts.items():
                self._entries[(entity, record_id)] = RecordFacts(record.owner_id, record.fields, None, record.account_id)
                self._entries.move_to_end((entity, record_id))
                if record.account_id is not None:
                    self._entries[(_ACCOUNT_OWNER, record.account_id)] = record.account_owner_id
                    self._entries.move_to_end((_ACCOUNT_OWNER, record.account_id))
            while len(self._entries) > self.max_records:
                self._entries.popitem(last=False)
        return True

    def invalidate(self, entity: str, record_ids) -> None:
        """Forget ``record_ids`` of ``entity`` (an account also as the owner its children carry)."""
        with self.lock:
            self._invalidations[entity] += 1
            for record_id in record_ids:
                self._entries.pop((entity, record_id), None)
                if entity == "accounts":
                    self._entries.pop((_ACCOUNT_OWNER, record_id), None)

    def flush(self, entity: str) -> None:
        """Forget every record of ``entity`` (and, for accounts, every account owner)."""
        with self.lock:
            self._invalidations[entity] += 1
            prefixes = (entity, _ACCOUNT_OWNER) if entity == "accounts" else (entity,)
            for key in [key for key in self._entries if key[0] in prefixes]:
                del self._entries[key]

    def clear(self) -> None:
        """Forget everything, and refuse every fill that began before."""
        with self.lock:
            self._cleared += 1
            self._entries.clear()

    def reset_after_fork(self) -> None:
        """In a forked child: a new lock (the parent's may have been held by a thread that no longer exists), empty."""
        self.lock = threading.RLock()
        self.clear()
