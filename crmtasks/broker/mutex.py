"""A cluster-wide, holder-owned mutex in Redis: one run of a job at a time, on every host.

The lock's value names its holder (crmtasks.broker.holders.LockHolder: the
token, host, pid and, for a worker, its heartbeat). ``SET key value NX PX
ttl`` takes the lock; release deletes it only if it still holds our value
(a Lua compare-and-delete), so a run whose lock was taken over or expired
can never free the lock of the run after it. A worker that redelivers the
*same* message (its first worker died) holds the same token, so it may
enter again at once, and the lock then names it.

A holder killed with SIGKILL no longer blocks others for the TTL: whoever
finds the lock held by a holder known to be dead (crmtasks.broker.holders)
takes it over with a Lua compare-and-set on the dead holder's value, so of
several processes that find it only one gets it. The TTL still bounds how
long a holder that cannot be proved dead (another host, no heartbeat)
blocks others.
"""

from __future__ import annotations

import redis

from crmtasks.broker.holders import LockHolder

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""

_SWAP = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    redis.call('set', KEYS[1], ARGV[2], 'px', ARGV[3])
    return 1
end
return 0
"""


def _as_holder(holder: LockHolder | str) -> LockHolder:
    """A holder; a plain string is a bare token (a holder that names no process, e.g. a message in line)."""
    return holder if isinstance(holder, LockHolder) else LockHolder(token=holder)


class RedisMutex:
    """A named lock owned by a holder.

    Parameters:
      client(redis.Redis): The Redis shared by every worker.
      key(str): The lock's key, one per job.
      ttl_ms(int): The time in milliseconds after which an unreleased lock expires.
    """

    def __init__(self, client: redis.Redis, key: str, ttl_ms: int) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = ttl_ms
        self._release = client.register_script(_RELEASE)
        self._swap = client.register_script(_SWAP)

    def acquire(self, holder: LockHolder | str) -> bool:
        """Take the lock for ``holder``; True if taken (or already held under the same token)."""
        holder = _as_holder(holder)
        value = holder.encode()
        for _ in range(3):  # the lock may be freed or changed between our reads
            if self.client.set(self.key, value, nx=True, px=self.ttl_ms):
                return True
            current = self.client.get(self.key)
            if current is None:
                continue
            if LockHolder.decode(current).token != holder.token:
                return False
            if self._swap(keys=[self.key], args=[current, value, self.ttl_ms]):
                return True
        return False

    def take_over(self, dead: LockHolder, holder: LockHolder | str) -> bool:
        """Take the lock from ``dead`` for ``holder`` if it still holds it (atomic); True if taken."""
        if dead.raw is None:
            raise ValueError("take_over needs the dead holder as read from the lock (LockHolder.decode)")
        return bool(self._swap(keys=[self.key], args=[dead.raw, _as_holder(holder).encode(), self.ttl_ms]))

    def release(self, holder: LockHolder | str) -> bool:
        """Free the lock if ``holder`` still owns it; True if it was freed."""
        return bool(self._release(keys=[self.key], args=[_as_holder(holder).encode()]))

    def holder(self) -> LockHolder | None:
        """Who holds the lock now, or None."""
        value = self.client.get(self.key)
        return LockHolder.decode(value) if value is not None else None
