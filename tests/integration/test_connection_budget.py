"""``crmtasks check`` warns when the deployment's pools, all full, exceed what PostgreSQL accepts."""

from __future__ import annotations

import dataclasses
import json
import uuid

import psycopg2

from crmtasks.redis_client import key
from crmtasks.runs import health
from crmtasks.settings import get_settings


def _settings_with_workers(redis_client, workers: int, threads: int, **changes):
    settings = dataclasses.replace(get_settings(), redis_prefix=f"{get_settings().redis_prefix}-budget-"
                                   f"{uuid.uuid4().hex[:6]}", **changes)
    for pid in range(workers):
        redis_client.set(key(settings, "heartbeat", "worker", f"host:{pid}"),
                         json.dumps({"queues": ["default"], "threads": threads, "db_pool_size": 20,
                                     "host": "host", "pid": pid}), px=60_000)
    return settings


def _server_available(url) -> int:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_setting('max_connections')::int - "
                    "current_setting('superuser_reserved_connections')::int")
        available = cur.fetchone()[0]
    conn.close()
    return available


def test_a_deployment_that_fits_is_reported_with_its_count(migrated_database_url, redis_client):
    settings = _settings_with_workers(redis_client, workers=2, threads=4)
    found = [finding for finding in health.run_checks(settings) if finding.area == "connections"]
    assert len(found) == 1 and found[0].ok, found
    assert found[0].message.startswith("this deployment opens at most 9 connections (2 worker process(es): 8, ")
    assert f"of the {_server_available(migrated_database_url)} PostgreSQL accepts" in found[0].message


def test_pools_beyond_max_connections_are_a_problem(migrated_database_url, redis_client):
    available = _server_available(migrated_database_url)
    # Workers within the limit; the application's processes tip it over.
    settings = _settings_with_workers(redis_client, workers=2, threads=8, api_processes=available // 20 + 1)
    found = [finding for finding in health.run_checks(settings) if finding.area == "connections"]
    assert len(found) == 1 and not found[0].ok, found
    message = found[0].message
    assert f"application process(es) x pool 20: {20 * (available // 20 + 1)}" in message
    assert f"more than the {available} PostgreSQL accepts" in message
    assert "lower CRMTASKS_DB_POOL_SIZE or worker threads, or raise max_connections" in message
    assert "\n" not in message
