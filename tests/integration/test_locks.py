"""The job mutex against the real Redis: one holder, owner-checked release, expiry."""

from __future__ import annotations

import time
import uuid

from crmtasks.broker.mutex import RedisMutex
from crmtasks.redis_client import key
from crmtasks.settings import get_settings


def _mutex(redis_client, ttl_ms=10_000):
    return RedisMutex(redis_client, key(get_settings(), "test-lock", uuid.uuid4().hex), ttl_ms=ttl_ms)


def test_one_holder_at_a_time(redis_client):
    mutex = _mutex(redis_client)
    assert mutex.acquire("run-a")
    assert not mutex.acquire("run-b")
    assert mutex.holder() == "run-a"
    assert mutex.release("run-a")
    assert mutex.acquire("run-b")
    mutex.release("run-b")


def test_release_by_a_non_owner_does_nothing(redis_client):
    mutex = _mutex(redis_client)
    assert mutex.acquire("run-a")
    assert not mutex.release("run-b")
    assert mutex.holder() == "run-a"
    mutex.release("run-a")


def test_same_token_reenters(redis_client):
    """A redelivered message (its worker died) carries the same id and may run at once."""
    mutex = _mutex(redis_client)
    assert mutex.acquire("message-1")
    assert mutex.acquire("message-1")
    mutex.release("message-1")


def test_lock_of_a_killed_holder_expires(redis_client):
    mutex = _mutex(redis_client, ttl_ms=200)
    assert mutex.acquire("dead-run")
    time.sleep(0.4)
    assert mutex.acquire("next-run")
    assert not mutex.release("dead-run")
    mutex.release("next-run")


def test_keys_carry_the_deployment_prefix():
    settings = get_settings()
    assert key(settings, "lock", "x") == f"{settings.redis_prefix}:lock:x"
