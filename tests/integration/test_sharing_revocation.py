"""Never wrong: a change commits, and the very next check in any process sees it, warm caches or not.

A long-lived checker process warms the caches (the warm_caches job fills
Redis and its memory) and is allowed; the test commits a
change; at once a new process (whose only cache is the now stale Redis
entry) and then the long-lived one (stale memory) check: both are denied.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

from tests.integration import test_sharing_model as hand_made
from tests.integration.test_sharing_model import (
    AGENT,
    MGR_EAST,
    MGR_WEST,
    REP_EAST,
    REP_EAST2,
    REP_WEST,
    SUPPORT,
)

organization = hand_made.organization  # the fixture writing the hand-made organization

ROOT = Path(__file__).resolve().parents[2]
PROCESS = [sys.executable, "-m", "tests.integration.sharing_checker_process"]


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


class CheckerProcess:
    def __init__(self) -> None:
        self.process = subprocess.Popen(PROCESS, cwd=ROOT, env=_environment(), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    def ask(self, **command) -> dict:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, f"checker process exited with {self.process.poll()}"
        return json.loads(line)

    def check(self, user, entity, record, level) -> dict:
        return self.ask(op="check", user=user, entity=entity, record=record, level=level)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def long_lived():
    process = CheckerProcess()
    yield process
    process.close()


def _one_shot_check(user, entity, record, level) -> dict:
    process = CheckerProcess()
    try:
        return process.check(user, entity, record, level)
    finally:
        process.close()


def _commit(url: str, statement: str) -> None:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(statement)
        assert cur.rowcount >= 1, statement


# name -> ((user, entity, record, level), setup statement, revoking statement). Changes to records
# (RECORD_CHANGES) bump no epoch: the warm entry stays valid and the live row says no.
RECORD_CHANGES = {"record reassigned", "criteria field changed", "account reassigned"}
REVOCATIONS = {
    "rule deleted": ((SUPPORT, "leads", 3, "read"), None, "DELETE FROM sharing_rules WHERE owner_role_id = 5"),
    "owner's role moved": ((MGR_EAST, "leads", 1, "edit"), None, "UPDATE roles SET parent_id = 5 WHERE id = 4"),
    "grantee's role moved": ((AGENT, "leads", 1, "read"), None, "UPDATE roles SET parent_id = 2 WHERE id = 8"),
    "grantee's role deleted": ((AGENT, "leads", 1, "edit"), None, "DELETE FROM roles WHERE id = 8"),
    "user's role changed": ((MGR_EAST, "leads", 1, "read"), None, f"UPDATE users SET role_id = 5 WHERE id = {MGR_EAST}"),
    "user deactivated": ((REP_EAST, "leads", 1, "read"), None, f"UPDATE users SET is_active = false WHERE id = {REP_EAST}"),
    "record reassigned": ((MGR_EAST, "leads", 1, "read"), None, f"UPDATE leads SET owner_id = {MGR_WEST} WHERE id = 1"),
    "criteria field changed": ((REP_WEST, "leads", 2, "read"), None, "UPDATE leads SET industry = 'tech' WHERE id = 2"),
    "account reassigned": ((MGR_EAST, "deals", 1, "read"), None, f"UPDATE accounts SET owner_id = {MGR_WEST} WHERE id = 1"),
    "org default closed": ((REP_EAST2, "leads", 3, "read"),
                           "UPDATE sharing_defaults SET access = 'public_read' WHERE entity = 'leads'",
                           "UPDATE sharing_defaults SET access = 'private' WHERE entity = 'leads'"),
    "rule downgraded to read": ((AGENT, "leads", 1, "edit"), None,
                                "UPDATE sharing_rules SET access = 'read' WHERE owner_role_id = 3"),
}


@pytest.mark.parametrize("name", list(REVOCATIONS))
def test_revoke_then_check_at_once_is_denied_in_every_process(organization, migrated_database_url, long_lived, name):
    (user, entity, record, level), setup, revoke = REVOCATIONS[name]
    if setup:
        _commit(migrated_database_url, setup)
    warmed = long_lived.ask(op="warm")
    assert warmed["sharing_visibility"]["users_warmed"] == 10  # every active user (one of 11 is inactive)
    before = long_lived.ask(op="counts")
    first = long_lived.check(user, entity, record, level)
    again = long_lived.check(user, entity, record, level)
    assert first["allowed"] and again["allowed"]
    assert again["counts"]["compiles"] == before["compiles"]  # served warm: the warmer filled memory too
    assert first["counts"]["local_hits"] == before["local_hits"] + 1
    assert again["counts"]["local_hits"] == first["counts"]["local_hits"] + 1

    _commit(migrated_database_url, revoke)

    fresh = _one_shot_check(user, entity, record, level)  # its only cache: the warmed, now stale, Redis entry
    assert fresh["allowed"] is False
    # a stale entry is found and rebuilt; after a record change the warm entry is still good
    assert fresh["counts"]["compiles"] == (0 if name in RECORD_CHANGES else 1)
    stale = long_lived.check(user, entity, record, level)  # its memory holds the stale entry
    assert stale["allowed"] is False


def test_a_new_process_is_served_from_the_warmed_redis_entry(organization, long_lived):
    long_lived.ask(op="warm")
    fresh = _one_shot_check(SUPPORT, "leads", 3, "read")
    assert fresh["allowed"] is True
    assert fresh["counts"]["redis_hits"] == 1 and fresh["counts"]["compiles"] == 0


def test_a_grant_counts_at_once_too(organization, migrated_database_url, long_lived):
    long_lived.ask(op="warm")
    assert long_lived.check(AGENT, "leads", 3, "read")["allowed"] is False
    _commit(migrated_database_url, "INSERT INTO sharing_rules (name, entity, kind, owner_role_id, grantee_role_id, "
                                   "grantee_include_subordinates, access) VALUES ('g', 'leads', 'owner', 5, 7, true, 'read')")
    assert _one_shot_check(AGENT, "leads", 3, "read")["allowed"] is True
    assert long_lived.check(AGENT, "leads", 3, "read")["allowed"] is True
