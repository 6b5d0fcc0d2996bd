"""How many PostgreSQL connections a deployment may open, against how many the server accepts.

Each process keeps a pool of its own (``CRMTASKS_DB_POOL_SIZE``), and a
thread holds a pooled connection only while it uses it, so a process never
opens more than the smaller of its threads and its pool size:

- a worker process: min(threads, pool size): the DatabaseConnection
  middleware lends each message's thread one;
- a scheduler: 1 (periodiq sends from one thread);
- a dashboard: min(its 4 waitress threads, pool size);
- a process of the application calling the library API (a web server
  process): the pool size (its other threads wait their turn);
- direct connections outside the pools: audit maintenance opens one more
  while it runs (one run at a time, under the job's lock).

``crmtasks check`` counts the workers, schedulers and dashboards from their
heartbeats (worker processes and dashboards publish their threads and pool
size; a scheduler counts one), takes the
application's processes from ``CRMTASKS_API_PROCESSES``, and compares the
total with what the server accepts from ordinary roles: ``max_connections``
minus ``superuser_reserved_connections`` and, from PostgreSQL 16,
``reserved_connections``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

# Threads of `crmtasks dashboard` (waitress), when its heartbeat does not say.
DASHBOARD_THREADS = 4
# Connections jobs open outside the pools at once: audit maintenance's own, one run at a time.
DIRECT_CONNECTIONS = 1


@dataclasses.dataclass(frozen=True)
class ServerLimit:
    """What the PostgreSQL server accepts.

    Parameters:
      max_connections(int): ``max_connections``.
      reserved(int): Slots kept for superusers and roles with pg_use_reserved_connections.
      open_now(int): Client connections open right now, from every application.
    """

    max_connections: int
    reserved: int
    open_now: int

    @property
    def available(self) -> int:
        """Connections ordinary roles may open."""
        return self.max_connections - self.reserved


def server_limit(conn) -> ServerLimit:
    """Read the server's connection limits through ``conn`` (a psycopg2 connection)."""
    with conn.cursor() as cur:
        cur.execute("SELECT current_setting('max_connections')::int, "
                    "current_setting('superuser_reserved_connections')::int "
                    "+ coalesce(current_setting('reserved_connections', true), '0')::int, "
                    "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')")
        max_connections, reserved, open_now = cur.fetchone()
    conn.rollback()
    return ServerLimit(max_connections, reserved, open_now)


@dataclasses.dataclass(frozen=True)
class Demand:
    """The most connections a deployment opens at once, and where they come from.

    Parameters:
      parts(tuple): ``(what, connections)`` pairs, e.g. ``("3 worker processes", 17)``.
    """

    parts: tuple[tuple[str, int], ...]

    @property
    def total(self) -> int:
        return sum(connections for _, connections in self.parts)

    def describe(self) -> str:
        return ", ".join(f"{what}: {connections}" for what, connections in self.parts if connections)


def _per_process(beats: Sequence[dict], default_threads: int, pool_size: int) -> int:
    return sum(min(int(beat.get("threads") or default_threads), int(beat.get("db_pool_size") or pool_size))
               for beat in beats)


def deployment_demand(workers: Sequence[dict], schedulers: Sequence[dict], dashboards: Sequence[dict], *,
                      api_processes: int, pool_size: int) -> Demand:
    """The deployment's connections from its live processes' heartbeats and the application's processes.

    Parameters:
      workers, schedulers, dashboards(list[dict]): Heartbeats (``threads``, ``db_pool_size``).
      api_processes(int): Processes of the application that call the library API (CRMTASKS_API_PROCESSES).
      pool_size(int): CRMTASKS_DB_POOL_SIZE, for the application's processes and heartbeats that lack it.
    """
    return Demand((
        (f"{len(workers)} worker process(es)", _per_process(workers, 1, pool_size)),
        (f"{len(schedulers)} scheduler(s)", _per_process(schedulers, 1, pool_size)),
        (f"{len(dashboards)} dashboard(s)", _per_process(dashboards, DASHBOARD_THREADS, pool_size)),
        (f"{api_processes} application process(es) x pool {pool_size}", api_processes * pool_size),
        ("audit maintenance's own", DIRECT_CONNECTIONS),
    ))
