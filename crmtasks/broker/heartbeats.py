"""Liveness of workers and schedulers, kept in Redis so any host can see every other.

Each live process refreshes a key ``<prefix>:heartbeat:<role>:<host>:<pid>``
every few seconds with a short expiry: a process that dies (even by
SIGKILL) disappears from ``alive()`` within the expiry. ``crmtasks check``
and the dashboard read them, and a job's lock names its holder's heartbeat,
so a lock whose worker died can be taken over (crmtasks.broker.holders).

When alert destinations are set (CRMTASKS_ALERT_URLS), each heartbeat also
runs the alert sweep (crmtasks.alerts.sweep) on a thread of its own, so
that a slow alert destination never delays the heartbeat itself.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time

import redis

from crmtasks.alerts import AlertSweep
from crmtasks.alerts.sweep import run_forever
from crmtasks.redis_client import get_redis, key
from crmtasks.settings import Settings

logger = logging.getLogger(__name__)
INTERVAL_S = 5
TTL_MS = 20_000
# The roles of the heartbeats this process publishes now, and how many of each.
_beating: dict[str, int] = {}
_beating_lock = threading.Lock()


def heartbeat_key(settings: Settings, role: str, host: str, pid: int) -> str:
    """The Redis key of the heartbeat of process ``pid`` on ``host`` in ``role``."""
    return key(settings, "heartbeat", role, f"{host}:{pid}")


def beating_role() -> str | None:
    """The role of a heartbeat this process publishes now (``worker`` first), or None."""
    with _beating_lock:
        roles = sorted(role for role, count in _beating.items() if count > 0)
    if "worker" in roles:
        return "worker"
    return roles[0] if roles else None


def is_beating(settings: Settings, role: str, host: str, pid: int) -> bool:
    """Whether process ``pid`` on ``host`` still publishes its ``role`` heartbeat (a Redis error propagates)."""
    return bool(get_redis(settings).exists(heartbeat_key(settings, role, host, pid)))


class Heartbeat:
    """A daemon thread that keeps one process's heartbeat key alive.

    Parameters:
      settings(Settings): Where Redis is, and the key prefix.
      role(str): ``worker`` or ``scheduler``.
      info(dict): What others should know (queues consumed, threads).
      interval_s(float): Seconds between two beats (and two alert sweep ticks).
      sweep(AlertSweep|None): The alert checks this heartbeat runs; default: the deployment's
        when it has alert destinations, else none.
    """

    def __init__(self, settings: Settings, role: str, info: dict, *, interval_s: float = INTERVAL_S,
                 sweep: AlertSweep | None = None) -> None:
        self.settings = settings
        self.role = role
        self.interval_s = interval_s
        if sweep is None and settings.alert_urls:
            sweep = AlertSweep(settings, alive)
        self.sweep = sweep
        self.key = heartbeat_key(settings, role, socket.gethostname(), os.getpid())
        self.info = dict(info, host=socket.gethostname(), pid=os.getpid(), started_at=time.time())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"crmtasks-{role}-heartbeat", daemon=True)
        self._sweep_thread = None
        if sweep is not None:
            self._sweep_thread = threading.Thread(target=run_forever, args=(sweep, self._stop, interval_s),
                                                  name=f"crmtasks-{role}-alerts", daemon=True)

    def start(self) -> Heartbeat:
        self._write()
        self._thread.start()
        if self._sweep_thread is not None:
            self._sweep_thread.start()
        with _beating_lock:
            _beating[self.role] = _beating.get(self.role, 0) + 1
        return self

    def stop(self, *, wait_s: float = 0.0) -> None:
        """Stop beating and remove the key; wait up to ``wait_s`` seconds for an alert sweep in progress."""
        if self._stop.is_set():
            return
        self._stop.set()
        with _beating_lock:
            _beating[self.role] = max(_beating.get(self.role, 0) - 1, 0)
        if self._sweep_thread is not None and self._sweep_thread.is_alive() and wait_s > 0:
            self._sweep_thread.join(wait_s)
        try:
            get_redis(self.settings).delete(self.key)
        except redis.RedisError:
            logger.warning("could not remove heartbeat %s", self.key)

    def _write(self) -> None:
        get_redis(self.settings).set(self.key, json.dumps(dict(self.info, beat_at=time.time())), px=TTL_MS)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._write()
            except redis.RedisError as error:  # Redis restarting: try again next beat
                logger.warning("heartbeat not written: %s", error)


def alive(settings: Settings, role: str) -> list[dict]:
    """The live processes of ``role`` with what they published."""
    client = get_redis(settings)
    pattern = key(settings, "heartbeat", role, "*")
    found = []
    for name in client.scan_iter(match=pattern, count=500):
        value = client.get(name)
        if value is not None:
            found.append(json.loads(value))
    return found
