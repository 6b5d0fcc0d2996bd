"""Only faults a retry can cure are retried; checked against errors from the real servers."""

from __future__ import annotations

import psycopg2
import pytest
import redis

from crmtasks.broker import retries as transient


def _raise_sqlstate(conn, code):
    with conn.cursor() as cur:
        cur.execute(f"DO $$ BEGIN RAISE EXCEPTION 'simulated' USING ERRCODE = '{code}'; END $$")


@pytest.mark.parametrize("code, expected", [
    ("40001", True),   # serialization_failure
    ("40P01", True),   # deadlock_detected
    ("22012", False),  # division_by_zero: bad data
    ("23505", False),  # unique_violation: a bug
    ("57014", False),  # query_canceled (statement_timeout): would time out again
])
def test_sqlstates(migrated_database_url, code, expected):
    conn = psycopg2.connect(migrated_database_url)
    try:
        with pytest.raises(psycopg2.Error) as caught:
            _raise_sqlstate(conn, code)
        assert caught.value.pgcode == code
        assert transient.is_transient(caught.value) is expected
    finally:
        conn.close()


def test_terminated_backend_is_transient(migrated_database_url):
    victim = psycopg2.connect(migrated_database_url)
    killer = psycopg2.connect(migrated_database_url)
    killer.autocommit = True
    with killer.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (victim.get_backend_pid(),))
    with pytest.raises(psycopg2.OperationalError) as caught, victim.cursor() as cur:
        cur.execute("SELECT 1")
    assert transient.is_transient(caught.value)
    killer.close()


def test_peewee_wrapped_errors_are_unwrapped(crm_db):
    with pytest.raises(Exception) as caught:
        crm_db.execute_sql("DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '40P01'; END $$")
    assert type(caught.value).__module__ == "peewee"
    assert transient.is_transient(caught.value)
    crm_db.rollback()
    with pytest.raises(Exception) as caught:
        crm_db.execute_sql("SELECT 1 / 0")
    assert not transient.is_transient(caught.value)
    crm_db.rollback()


def test_lost_redis_connection_is_transient():
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    with pytest.raises(redis.ConnectionError) as caught:
        client.ping()
    assert transient.is_transient(caught.value)


def test_bugs_and_time_limits_are_not_transient():
    from dramatiq.middleware import TimeLimitExceeded

    assert not transient.is_transient(ValueError("bad filter"))
    assert not transient.is_transient(KeyError("x"))
    assert not transient.is_transient(TimeLimitExceeded())


def test_should_retry_respects_the_budget():
    error = redis.ConnectionError("gone")
    assert transient.should_retry(0, error, max_retries=2)
    assert transient.should_retry(1, error, max_retries=2)
    assert not transient.should_retry(2, error, max_retries=2)
    assert not transient.should_retry(0, ValueError("bug"), max_retries=2)
