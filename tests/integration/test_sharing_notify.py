"""``notify`` consistency: warm checks from memory, kept right by LISTEN/NOTIFY, exact whenever not listening.

On the hand-made organization of test_sharing_model: every revocation of
test_sharing_revocation (and deletions) counts after ``sync()``; a change
reaches memory by itself; with the listener's session terminated and the
database refusing new connections, checks read PostgreSQL and are right, and
memory answers come back once it listens again; losing Redis changes no
answer; a forked child listens on a connection of its own; ``close()``
ends the session.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from urllib.parse import urlsplit

import psycopg2
import pytest
import redis

from crmtasks import sharing
from crmtasks.settings import get_settings
from crmtasks.sharing.cache import visibility_key
from crmtasks.sharing.warm import warm_visibility
from tests.integration import test_sharing_model as hand_made
from tests.integration.test_sharing_model import (
    CEO,
    MGR_EAST,
    MGR_WEST,
    REP_EAST,
    SUPPORT,
)
from tests.integration.test_sharing_revocation import REVOCATIONS, _commit

organization = hand_made.organization  # the fixture writing the hand-made organization

# Revocations that only the record notifications carry (deletions, and the FK's SET NULL on the children).
DELETIONS = {
    "record deleted": ((MGR_EAST, "leads", 1, "read"), None, "DELETE FROM leads WHERE id = 1"),
    "account deleted": ((MGR_EAST, "deals", 1, "read"), None, "DELETE FROM accounts WHERE id = 1"),
}


@pytest.fixture()
def notify(organization):
    checker = sharing.make_checker(get_settings(), consistency="notify")
    assert checker.listener.wait_listening(10)
    yield checker
    checker.close()


def _warm(checker, user, entity, record, level, expected=True) -> None:
    """Check twice: the first reads PostgreSQL and remembers, the second must come from memory alone."""
    assert checker.can_access(user, entity, record, level) is expected
    before = dict(checker.counts)
    assert checker.can_access(user, entity, record, level) is expected
    assert checker.counts["memory_answers"] == before.get("memory_answers", 0) + 1
    assert checker.counts["database_answers"] == before.get("database_answers", 0)


def _wait_for(condition, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.005)


@pytest.mark.parametrize("name", [*REVOCATIONS, *DELETIONS])
def test_revoke_sync_then_check_is_denied(notify, migrated_database_url, name):
    (user, entity, record, level), setup, revoke = {**REVOCATIONS, **DELETIONS}[name]
    if setup:
        _commit(migrated_database_url, setup)
        assert notify.sync() is True
    _warm(notify, user, entity, record, level)
    _commit(migrated_database_url, revoke)
    assert notify.sync() is True
    assert notify.can_access(user, entity, record, level) is False
    assert notify.can_access_many(user, entity, [record, 99], level) == set()
    if name == "record deleted":  # a missing record is never remembered (inserts send no notification)
        before = notify.counts["database_answers"]
        assert notify.can_access(user, entity, record, level) is False
        assert notify.counts["database_answers"] == before + 1
    else:
        _warm(notify, user, entity, record, level, expected=False)  # and that is remembered in turn


def test_a_grant_counts_after_sync_and_pages_are_answered_from_memory(notify, migrated_database_url):
    _warm(notify, SUPPORT, "leads", 4, "read", expected=False)
    assert notify.can_access_many(SUPPORT, "leads", [1, 2, 3, 4]) == {1, 2, 3}
    before = notify.counts["memory_answers"]
    assert notify.can_access_many(SUPPORT, "leads", [1, 2, 3, 4]) == {1, 2, 3}
    assert notify.counts["memory_answers"] == before + 1
    _commit(migrated_database_url, "UPDATE sharing_rules SET owner_include_subordinates = true WHERE owner_role_id = 5")
    assert notify.sync() is True
    assert notify.can_access_many(SUPPORT, "leads", [1, 2, 3, 4]) == {1, 2, 3, 4}  # Rep West's lead 4 now too


def test_a_change_reaches_memory_without_sync(notify, migrated_database_url):
    _warm(notify, MGR_EAST, "leads", 1, "read")
    _commit(migrated_database_url, f"UPDATE leads SET owner_id = {MGR_WEST} WHERE id = 1")
    _wait_for(lambda: not notify.can_access(MGR_EAST, "leads", 1, "read"), "the notification to arrive")
    assert notify.listener.counts["notifications"] >= 1


def test_facts_read_ahead_of_the_notifications_are_not_remembered(notify, migrated_database_url):
    records = notify.listener.records
    _warm(notify, SUPPORT, "leads", 3, "edit", expected=False)
    with records.lock:  # the listener cannot apply a batch of notifications meanwhile
        _commit(migrated_database_url, "UPDATE sharing_rules SET access = 'edit' WHERE owner_role_id = 5")
        assert notify.can_access(SUPPORT, "leads", 4, "read") is False  # read from PostgreSQL, at the new epoch
        assert records.get_many("leads", [4]) is None  # not remembered: memory still answers at the old epoch
    assert notify.sync() is True
    assert notify.can_access(SUPPORT, "leads", 3, "edit") is True
    _warm(notify, SUPPORT, "leads", 4, "read", expected=False)  # once the batch is applied, remembered as usual


def _allow_connections(admin, database: str, allowed: bool) -> None:
    with admin.cursor() as cur:
        cur.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}')


def test_while_the_listener_is_down_checks_are_exact_then_memory_again(notify, crm_db, migrated_database_url,
                                                                        server_database_url):
    check = (MGR_EAST, "leads", 1, "read")
    _warm(notify, *check)
    _warm(notify, MGR_EAST, "leads", 2, "read")  # remembered before the outage, changed during it for good
    first_backend = notify.listener.backend_pid
    database = urlsplit(migrated_database_url).path.lstrip("/")
    admin = psycopg2.connect(server_database_url)
    admin.autocommit = True
    writer = psycopg2.connect(migrated_database_url)  # opened before the database refuses new sessions
    writer.autocommit = True
    try:
        _allow_connections(admin, database, False)  # the listener cannot reconnect: the outage lasts
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (first_backend,))
        _wait_for(lambda: not notify.listener.state.listening, "the listener to notice")
        with writer.cursor() as cur:  # changes nobody is notified of
            cur.execute(f"UPDATE leads SET owner_id = {MGR_WEST} WHERE id IN (1, 2)")
        memory = notify.counts["memory_answers"]
        assert notify.can_access(*check) is False  # exact: counts at once, without sync
        assert notify.sync(timeout_s=1) is False  # not listening: the checks are exact already
        with writer.cursor() as cur:
            cur.execute(f"UPDATE users SET is_active = false WHERE id = {CEO}")  # an epoch bump, unheard
        assert notify.can_access(CEO, "leads", 4, "read") is False
        assert notify.can_access_many(MGR_EAST, "leads", [1, 2, 3]) == set()  # leads 1 and 2 moved away
        assert notify.counts["memory_answers"] == memory  # every answer read PostgreSQL
        _wait_for(lambda: notify.listener.counts["connection_errors"] >= 2, "a refused reconnection")
        assert not notify.listener.state.listening
    finally:
        _allow_connections(admin, database, True)
        admin.close()
    assert notify.listener.wait_listening(10)
    assert notify.listener.backend_pid != first_backend
    with writer.cursor() as cur:
        cur.execute(f"UPDATE leads SET owner_id = {REP_EAST} WHERE id = 1")
        cur.execute(f"UPDATE users SET is_active = true WHERE id = {CEO}")
    writer.close()
    assert notify.sync() is True
    _warm(notify, *check)  # right, then from memory alone again
    _warm(notify, CEO, "leads", 4, "read")
    _warm(notify, MGR_EAST, "leads", 2, "read", expected=False)  # nothing remembered from before survived


@pytest.fixture()
def private_redis(tmp_path):
    """A Redis server of this test's own, to stop and start again (the shared one must stay up)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = {}

    def start():
        server["process"] = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
        client = redis.Redis(port=port)
        _wait_for(lambda: _pings(client), "redis-server to start")

    def kill():
        server["process"].send_signal(signal.SIGKILL)
        server["process"].wait(10)

    start()
    yield dataclasses.make_dataclass("PrivateRedis", ["url", "start", "kill"])(f"redis://127.0.0.1:{port}/0", start, kill)
    if server["process"].poll() is None:
        kill()


def _pings(client) -> bool:
    try:
        return client.ping()
    except redis.ConnectionError:
        return False


def test_losing_redis_changes_no_answer_and_memory_keeps_answering(organization, private_redis, migrated_database_url):
    settings = dataclasses.replace(get_settings(), redis_url=private_redis.url)
    checker = sharing.make_checker(settings, consistency="notify")
    try:
        assert checker.listener.wait_listening(10)
        warmed = warm_visibility(settings, checker)
        assert (warmed["keys"], warmed["memory_users"], warmed["consistency"]) == (10, 10, "notify")
        _warm(checker, SUPPORT, "leads", 3, "read")
        private_redis.kill()
        _warm(checker, SUPPORT, "leads", 3, "read")  # Redis is not on the memory path
        _commit(migrated_database_url, "DELETE FROM sharing_rules WHERE owner_role_id = 5")  # stales the visibility
        assert checker.sync() is True and checker.listener.state.listening  # nor on the notification path
        assert checker.can_access(SUPPORT, "leads", 3, "read") is False  # compiled from PostgreSQL
        assert checker.cache.counts["redis_errors"] >= 1
        _warm(checker, SUPPORT, "leads", 3, "read", expected=False)
        private_redis.start()
        _commit(migrated_database_url, "INSERT INTO sharing_rules (name, entity, kind, owner_role_id, grantee_role_id, "
                                       "access) VALUES ('back', 'leads', 'owner', 5, 7, 'read')")
        assert checker.sync() is True
        _warm(checker, SUPPORT, "leads", 3, "read")
        assert redis.Redis.from_url(private_redis.url).exists(visibility_key(settings, SUPPORT)) == 1  # written again
    finally:
        checker.close()


def test_a_forked_child_listens_on_a_connection_of_its_own(notify, migrated_database_url):
    _warm(notify, MGR_EAST, "leads", 1, "read")
    parent_backend = notify.listener.backend_pid
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the child: report and leave without running any of pytest's clean-up
        try:
            signal.alarm(60)
            answer = {"listening_at_fork": notify.listener.state.listening}
            answer["allowed"] = notify.can_access(MGR_EAST, "leads", 1, "read")
            answer["listening"] = notify.listener.wait_listening(10)
            answer["backend"] = notify.listener.backend_pid
            _commit(migrated_database_url, f"UPDATE leads SET owner_id = {MGR_WEST} WHERE id = 1")
            answer["synced"] = notify.sync()
            answer["after"] = notify.can_access(MGR_EAST, "leads", 1, "read")
            os.write(write_end, json.dumps(answer).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        answer = json.loads(reader.read() or "null")
    os.waitpid(child, 0)
    assert answer == {"listening_at_fork": False, "allowed": True, "listening": True, "backend": answer["backend"],
                      "synced": True, "after": False}
    assert answer["backend"] not in (None, parent_backend)
    # the parent's session survived the child (nothing closed it) and heard the child's change
    assert notify.listener.backend_pid == parent_backend and notify.sync() is True
    assert notify.can_access(MGR_EAST, "leads", 1, "read") is False


def test_close_ends_the_session_and_checks_stay_exact(notify, crm_db):
    backend, thread = notify.listener.backend_pid, notify.listener._thread
    notify.close()
    assert not thread.is_alive()
    _wait_for(lambda: crm_db.execute_sql("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                         (backend,)).fetchone()[0] == 0, "the session to end")
    before = notify.counts["database_answers"]
    assert notify.can_access(CEO, "leads", 1) is True and notify.can_access(CEO, "leads", 1) is True
    assert notify.counts["database_answers"] == before + 2
    assert notify.sync() is False
