"""Who holds a job's lock, and whether that holder is known to be dead.

A job's lock (crmtasks.broker.mutex) stores its holder: the token (a
worker's message id, or ``run-now-<uuid>`` for ``crmtasks run``), the host
and pid of the process, the process's start time (a pid the system reused
is another process), the process's pid namespace on that machine
(containers may share a hostname, never a namespace), and for a worker the
role of its heartbeat (crmtasks.broker.heartbeats).

A holder is dead when it can be proved:
  * it ran on this host, in this pid namespace, and its pid is gone, a
    zombie, or now a process started at another time; or
  * it published a heartbeat and that heartbeat expired (any host).
Anything else (a live pid, another host without a heartbeat, a value
written by something else) is alive as far as anyone can tell, and its
lock is respected until its TTL.

A heartbeat expires 20 s after its last beat (crmtasks.broker.heartbeats).
A worker cut off from Redis for longer than that, while its job goes on,
looks dead once Redis is back until its next beat (at most 5 s later);
that is the one window in which a live worker's lock can be taken over.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import socket

from crmtasks.broker import heartbeats
from crmtasks.runs.processes import process_is_gone, start_time
from crmtasks.settings import Settings


@functools.lru_cache(maxsize=1)
def _namespace() -> str | None:
    """This process's pid namespace on this machine (boot id and namespace inode), or None off Linux."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as boot:
            boot_id = boot.read().strip()
        return f"{boot_id}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return None


@dataclasses.dataclass(frozen=True)
class LockHolder:
    """The holder of a lock, as stored in the lock's value.

    Parameters:
      token(str): What the holder took the lock as: a message id, or ``run-now-<uuid>``.
      host(str|None): The holder's hostname; None for a value that names no process.
      pid(int|None): The holder's process id.
      started(float|None): The holder's process start time, in seconds since the epoch.
      namespace(str|None): The holder's pid namespace (see _namespace), None off Linux.
      heartbeat(str|None): The role of the heartbeat the holder's process publishes (``worker``), if any.
      raw(str|None): The lock's value exactly as read from Redis (set by ``decode``).
    """

    token: str
    host: str | None = None
    pid: int | None = None
    started: float | None = None
    namespace: str | None = None
    heartbeat: str | None = None
    raw: str | None = dataclasses.field(default=None, compare=False, repr=False)

    @classmethod
    def this_process(cls, token: str) -> LockHolder:
        """A holder for ``token`` naming this process (and its heartbeat, when it publishes one)."""
        pid = os.getpid()
        return cls(token=token, host=socket.gethostname(), pid=pid, started=start_time(pid),
                   namespace=_namespace(), heartbeat=heartbeats.beating_role())

    def encode(self) -> str:
        """The lock's value: JSON naming the holder; a bare token for a holder that names no process."""
        if self.host is None:
            return self.token
        fields = {"token": self.token, "host": self.host, "pid": self.pid, "started": self.started,
                  "namespace": self.namespace, "heartbeat": self.heartbeat}
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))

    @classmethod
    def decode(cls, value: bytes | str) -> LockHolder:
        """The holder a lock's value names; a value that is not ours is a bare token."""
        raw = value.decode() if isinstance(value, bytes) else value
        try:
            fields = json.loads(raw)
        except ValueError:
            fields = None
        if not isinstance(fields, dict) or not isinstance(fields.get("token"), str):
            return cls(token=raw, raw=raw)
        return cls(token=fields["token"], host=fields.get("host"), pid=fields.get("pid"),
                   started=fields.get("started"), namespace=fields.get("namespace"),
                   heartbeat=fields.get("heartbeat"), raw=raw)

    def describe(self) -> str:
        """``pid 4242 on web-1``, or the token for a holder that names no process."""
        if self.host is None:
            return f"token {self.token}"
        return f"pid {self.pid} on {self.host}"

    def is_here(self) -> bool:
        """True when the holder's process was (or is) on this host, in this pid namespace."""
        return self.host == socket.gethostname() and self.namespace == _namespace() and isinstance(self.pid, int)


def why_dead(holder: LockHolder, settings: Settings) -> str | None:
    """How ``holder`` is known to be dead (``pid 4242 on web-1``, with why), or None when it may be alive.

    Parameters:
      holder(LockHolder): Whom a lock names.
      settings(Settings): Where Redis is (for heartbeats), and the key prefix.
    """
    if holder.host is None or not isinstance(holder.pid, int):
        return None
    if holder.is_here():
        if process_is_gone(holder.pid, holder.started):
            return holder.describe()
        return None
    if holder.heartbeat and not heartbeats.is_beating(settings, holder.heartbeat, holder.host, holder.pid):
        return f"{holder.describe()}; its {holder.heartbeat} heartbeat stopped"
    return None

