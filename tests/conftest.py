"""Test session setup: a database and a Redis key prefix of this run's own.

The tests talk to real servers: those named by DATABASE_URL and REDIS_URL,
or the embedded ones under CRMTASKS_HOME when unset. Each run creates a
fresh database ``crmtasks_test_<id>`` on that PostgreSQL server and uses the
Redis prefix ``crmtasks-test-<id>``, so concurrent runs cannot collide; both
are removed when the run ends. Subprocesses inherit the environment set here.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2
import pytest
import redis
from hypothesis.configuration import set_hypothesis_home_dir

RUN_ID = uuid.uuid4().hex[:10]
TEST_DATABASE = f"crmtasks_test_{RUN_ID}"
TEST_PREFIX = f"crmtasks-test-{RUN_ID}"

_server_database_url: str | None = None

# Hypothesis keeps its example database under the (git-ignored) state
# directory instead of a .hypothesis folder at the top of the tree.
set_hypothesis_home_dir(str(Path(__file__).resolve().parents[1] / ".crmtasks" / "hypothesis"))


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` on the same server."""
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def _admin_connection():
    conn = psycopg2.connect(_server_database_url)
    conn.autocommit = True
    return conn


def pytest_sessionstart(session):
    global _server_database_url
    from crmtasks.services import urls as services
    from crmtasks.settings import load_settings

    settings = load_settings(os.environ)
    _server_database_url = services.database_url(settings)
    redis_url = services.redis_url(settings)
    conn = _admin_connection()
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{TEST_DATABASE}"')
    conn.close()
    os.environ["DATABASE_URL"] = with_database(_server_database_url, TEST_DATABASE)
    os.environ["REDIS_URL"] = redis_url
    os.environ["CRMTASKS_REDIS_PREFIX"] = TEST_PREFIX
    from crmtasks.settings import get_settings

    get_settings.cache_clear()


def pytest_sessionfinish(session, exitstatus):
    if _server_database_url is None:
        return
    from crmtasks.pg import db

    if db.database.obj is not None:
        db.database.obj.close_all()
    conn = _admin_connection()
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{TEST_DATABASE}" WITH (FORCE)')
    conn.close()
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    keys = list(client.scan_iter(match=f"{TEST_PREFIX}*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start:start + 500])


@pytest.fixture(scope="session")
def database_url() -> str:
    """URL of this run's own database (schema not yet applied)."""
    return os.environ["DATABASE_URL"]


@pytest.fixture(scope="session")
def server_database_url() -> str:
    """URL of the server's default database, for tests that create databases of their own."""
    return _server_database_url


@pytest.fixture(scope="session")
def migrated_database_url(database_url) -> str:
    """This run's database with every migration applied."""
    from crmtasks.pg import migrate

    conn = migrate.connect(database_url)
    try:
        migrate.migrate(conn)
    finally:
        conn.close()
    return database_url


@pytest.fixture()
def crm_db(migrated_database_url):
    """The peewee database bound to this run's database, with every CRM table empty."""
    from crmtasks.pg import db
    from crmtasks.settings import get_settings

    database = db.bind(get_settings())
    database.connect(reuse_if_open=True)
    database.execute_sql(
        "TRUNCATE roles, users, accounts, contacts, leads, deals, task_runs, schedule_slots, job_pauses, job_schedules "
        "RESTART IDENTITY CASCADE"
    )
    yield database
    db.release_connection()


@pytest.fixture()
def fresh_database(server_database_url):
    """An empty database of its own (no schema), dropped afterwards; yields its URL."""
    name = f"crmtasks_test_{RUN_ID}_{uuid.uuid4().hex[:6]}"
    conn = psycopg2.connect(server_database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    yield with_database(server_database_url, name)
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


@pytest.fixture()
def redis_client():
    return redis.Redis.from_url(os.environ["REDIS_URL"])
