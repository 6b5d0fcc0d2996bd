"""A cluster-wide, token-owned mutex in Redis: one run of a job at a time, on every host.

``SET key token NX PX ttl`` takes the lock; release deletes it only if it
still holds our token (a Lua compare-and-delete), so a run whose lock
expired can never free the lock of the run that took over. The TTL is
longer than the job's time limit: a holder killed with SIGKILL blocks others
at most that long. A worker that redelivers the *same* message (its first
worker died) holds the same token, so it may enter again at once.
"""

from __future__ import annotations

import redis

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class RedisMutex:
    """A named lock owned by a token.

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

    def acquire(self, token: str) -> bool:
        """Take the lock for ``token``; True if taken (or already held by the same token)."""
        if self.client.set(self.key, token, nx=True, px=self.ttl_ms):
            return True
        holder = self.client.get(self.key)
        if holder is not None and holder.decode() == token:
            self.client.pexpire(self.key, self.ttl_ms)
            return True
        return False

    def release(self, token: str) -> bool:
        """Free the lock if ``token`` still owns it; True if it was freed."""
        return bool(self._release(keys=[self.key], args=[token]))

    def holder(self) -> str | None:
        """The token holding the lock now, or None."""
        value = self.client.get(self.key)
        return value.decode() if value is not None else None
