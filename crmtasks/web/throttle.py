"""The limit on failed dashboard logins, per user name and per client address, kept in Redis.

Each failed login adds one to two counters: one for the user name typed and
one for the address it came from. A counter lives ``FAILURE_WINDOW_S`` seconds
from its first failure. While either is at its limit, every login attempt of
that user, or from that address, is answered 429 with ``Retry-After`` (the
seconds until the counter ends), without checking the password, so guessing
goes no faster than the limits. The counters live in Redis under
``CRMTASKS_REDIS_PREFIX``, so every dashboard process of a deployment shares
them. A successful login does not reset them: the limit counts failures,
whoever then succeeds.

A wrong user and a wrong password cost the same: both counters move either
way, and the credentials are compared in constant time whatever is wrong.
User names are hashed into the key (a typo may be somebody's password).

Behind a reverse proxy every client has the proxy's address, so the
per-address limit then counts everyone together.
"""

from __future__ import annotations

import dataclasses
import hashlib

import redis

from crmtasks.redis_client import key
from crmtasks.settings import Settings

# Failed logins of one user name allowed in a window; the next attempts wait for the window to end.
MOST_FAILURES_PER_USER = 10
# Failed logins from one client address allowed in a window, whatever the user names.
MOST_FAILURES_PER_ADDRESS = 30
# Seconds a window lasts, from its first failure.
FAILURE_WINDOW_S = 15 * 60


@dataclasses.dataclass(frozen=True)
class LoginThrottle:
    """Counts failed logins and says how long a user or an address must wait.

    Parameters:
      client(redis.Redis): The deployment's Redis.
      settings(Settings): For the key prefix.
      per_user(int): Failures of one user name allowed per window.
      per_address(int): Failures from one address allowed per window.
      window_s(int): Seconds a window lasts from its first failure.
    """

    client: redis.Redis
    settings: Settings
    per_user: int = MOST_FAILURES_PER_USER
    per_address: int = MOST_FAILURES_PER_ADDRESS
    window_s: int = FAILURE_WINDOW_S

    def _counters(self, user: str, address: str) -> list[tuple[str, int]]:
        user_digest = hashlib.sha256(user.encode("utf-8", "replace")).hexdigest()[:32]
        return [(key(self.settings, "dashboard", "login-failures", "user", user_digest), self.per_user),
                (key(self.settings, "dashboard", "login-failures", "address", address or "unknown"),
                 self.per_address)]

    def wait_s(self, user: str, address: str) -> int:
        """Seconds before ``user`` may try again from ``address``; 0 when they may try now. Raises RedisError."""
        counters = self._counters(user, address)
        with self.client.pipeline(transaction=False) as pipe:
            for name, _ in counters:
                pipe.get(name)
                pipe.ttl(name)
            answers = pipe.execute()
        wait = 0
        for index, (_, limit) in enumerate(counters):
            count, ttl = answers[2 * index], answers[2 * index + 1]
            if count is not None and int(count) >= limit:
                wait = max(wait, ttl if ttl > 0 else self.window_s)
        return wait

    def failed(self, user: str, address: str) -> None:
        """Count one failed login of ``user`` from ``address`` (atomic; a new window starts at its first failure)."""
        with self.client.pipeline(transaction=True) as pipe:
            for name, _ in self._counters(user, address):
                pipe.set(name, 0, ex=self.window_s, nx=True)
                pipe.incr(name)
            pipe.execute()
