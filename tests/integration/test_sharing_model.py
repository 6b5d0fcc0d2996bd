"""The sharing model on one hand-made organization, and the schema that holds it.

The organization (roles, with the users in them):

    1 CEO (ceo)
    ├── 2 VP Sales (vp)
    │   ├── 3 Manager East (mgr_east)
    │   │   └── 4 Rep East (rep_east, rep_east2)
    │   └── 5 Manager West (mgr_west)
    │       └── 6 Rep West (rep_west, gone: inactive)
    └── 7 Support (support)
        └── 8 Support Agent (agent)
    nobody (no role)
"""

from __future__ import annotations

from collections.abc import Iterator

import peewee
import psycopg2
import pytest
from psycopg2 import sql

from crmtasks import sharing
from crmtasks.sharing import rules as sharing_rules
from tests.integration.sharing_support import (
    Org,
    Rule,
    reference_access,
    reset_defaults,
    write_org,
)

CEO, VP, MGR_EAST, REP_EAST, REP_EAST2, MGR_WEST, REP_WEST, GONE, SUPPORT, AGENT, NOBODY = range(1, 12)
ROLES = {1: None, 2: 1, 3: 2, 4: 3, 5: 2, 6: 5, 7: 1, 8: 7}
USERS = {CEO: (1, True), VP: (2, True), MGR_EAST: (3, True), REP_EAST: (4, True), REP_EAST2: (4, True),
         MGR_WEST: (5, True), REP_WEST: (6, True), GONE: (6, False), SUPPORT: (7, True), AGENT: (8, True),
         NOBODY: (None, True)}


def _lead(owner, industry=None, status="new"):
    return {"owner_id": owner, "status": status, "industry": industry, "source": None, "rating": None}


LEADS = {1: _lead(REP_EAST), 2: _lead(REP_EAST2, industry="retail"), 3: _lead(MGR_WEST), 4: _lead(REP_WEST),
         5: _lead(GONE), 6: _lead(None), 7: _lead(NOBODY)}
ACCOUNTS = {1: {"owner_id": REP_EAST, "industry": "tech", "region": "east"},
            2: {"owner_id": REP_WEST, "industry": "retail", "region": "west"}}
DEALS = {1: {"owner_id": REP_WEST, "account_id": 1, "stage": "open"},
         2: {"owner_id": REP_WEST, "account_id": None, "stage": "open"}}
CONTACTS = {1: {"owner_id": MGR_WEST, "account_id": 2, "lead_source": "web"}}
RULES = [
    # Manager West's own records (not their team's) to Support only (not its agents), read
    Rule("leads", "owner", "read", grantee_role=7, grantee_subordinates=False, owner_role=5, owner_subordinates=False),
    # Manager East's team, subordinates included, to Support and its agents, edit
    Rule("leads", "owner", "edit", grantee_role=7, grantee_subordinates=True, owner_role=3, owner_subordinates=True),
    # retail leads to Rep West, read
    Rule("leads", "criteria", "read", grantee_role=6, grantee_subordinates=False, field="industry", value="retail"),
    # retail accounts to Support: read on the account, which does not reach its contacts and deals
    Rule("accounts", "criteria", "read", grantee_role=7, grantee_subordinates=False, field="industry", value="retail"),
]

# (user, entity, record, level) -> expected, with the reason
EXPECTED = [
    (REP_EAST, "leads", 1, "edit", True),       # the owner
    (MGR_EAST, "leads", 1, "edit", True),       # the owner's manager: hierarchy grants edit
    (CEO, "leads", 4, "edit", True),            # top of the hierarchy
    (REP_EAST2, "leads", 1, "read", False),     # a peer in the same role
    (MGR_WEST, "leads", 1, "read", False),      # another branch
    (MGR_WEST, "leads", 5, "edit", True),       # records of an inactive user stay visible above them
    (GONE, "leads", 5, "read", False),          # an inactive user sees nothing, not even their own
    (SUPPORT, "leads", 3, "read", True),        # rule 1: Manager West's own leads
    (SUPPORT, "leads", 3, "edit", False),       # rule 1 is read only
    (SUPPORT, "leads", 4, "read", False),       # rule 1 has no owner subordinates: not Rep West's
    (AGENT, "leads", 3, "read", False),         # rule 1 has no grantee subordinates
    (AGENT, "leads", 1, "edit", True),          # rule 2: owners and grantees with subordinates, edit
    (SUPPORT, "leads", 2, "edit", True),        # rule 2 again
    (REP_WEST, "leads", 2, "read", True),       # rule 3: retail leads
    (REP_WEST, "leads", 2, "edit", False),      # rule 3 is read only
    (MGR_WEST, "leads", 2, "read", False),      # rule 3 has no grantee subordinates (and Manager West is above)
    (VP, "leads", 6, "read", False),            # a lead without owner: defaults and criteria only
    (NOBODY, "leads", 7, "edit", True),         # a user without a role still owns
    (CEO, "leads", 7, "read", False),           # ... but nobody is above them
    (MGR_EAST, "deals", 1, "read", True),       # child access: the account is Rep East's, below Manager East
    (REP_EAST, "deals", 1, "read", True),       # child access: the account's owner
    (REP_EAST, "deals", 1, "edit", False),      # child access is read only
    (REP_EAST2, "deals", 1, "read", False),     # a peer of the account's owner
    (SUPPORT, "accounts", 2, "read", True),     # rule 4
    (SUPPORT, "contacts", 1, "read", False),    # ... does not reach the account's contacts
    (REP_WEST, "contacts", 1, "read", True),    # child access: Rep West owns account 2
    (MGR_WEST, "deals", 2, "edit", True),       # hierarchy over the deal's own owner
]


@pytest.fixture()
def organization(crm_db, migrated_database_url) -> Iterator[Org]:
    org = Org(roles=ROLES, users=USERS, defaults={}, rules=RULES,
              records={"leads": LEADS, "accounts": ACCOUNTS, "deals": DEALS, "contacts": CONTACTS})
    write_org(migrated_database_url, org)
    yield org
    reset_defaults(migrated_database_url)


def _visible_ids(cur, entity: str, condition: sql.Composable) -> list[int]:
    cur.execute(sql.SQL("SELECT r.id FROM {} AS r WHERE {} ORDER BY r.id").format(sql.Identifier(entity), condition))
    return [row[0] for row in cur.fetchall()]


@pytest.mark.parametrize("user_id,entity,record_id,level,expected", EXPECTED)
def test_hand_made_organization(organization, crm_db, user_id, entity, record_id, level, expected):
    assert reference_access(organization, user_id, entity, record_id, level) is expected  # the reference agrees
    assert sharing.can_access(user_id, entity, record_id, level) is expected
    with crm_db.connection().cursor() as cur:
        assert (record_id in _visible_ids(cur, entity, sharing.visible(user_id, entity, "r", level))) is expected


def test_visible_reads_the_rules_in_the_callers_snapshot(organization, migrated_database_url):
    conn = psycopg2.connect(migrated_database_url)
    conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")  # the caller's snapshot starts here
            sharing_rules.set_default("leads", "public_read")  # committed by another session after it
            assert _visible_ids(cur, "leads", sharing.visible(REP_EAST2, "leads", "r", cursor=cur)) == [2]
        conn.rollback()
        with conn.cursor() as cur:  # a new transaction sees the change
            assert _visible_ids(cur, "leads", sharing.visible(REP_EAST2, "leads", "r", cursor=cur)) == list(LEADS)
    finally:
        conn.rollback()
        conn.close()


# -- the schema ---------------------------------------------------------------

def _epoch(cur) -> tuple[int, str]:
    cur.execute("SELECT epoch, token::text FROM sharing_epoch")
    return cur.fetchone()


BUMPING = [
    "INSERT INTO roles (id, name, parent_id) VALUES (50, 'new', 1)",
    "UPDATE roles SET parent_id = 7 WHERE id = 5",
    "UPDATE roles SET name = 'renamed' WHERE id = 2",  # harmless, but roles change rarely: every change bumps
    "DELETE FROM roles WHERE id = 8",  # its users lose the role (ON DELETE SET NULL)
    "INSERT INTO users (id, username, full_name, role_id) VALUES (50, 'new', 'New', 4)",
    "UPDATE users SET role_id = 3 WHERE id = 4",
    "UPDATE users SET is_active = false WHERE id = 4",
    "DELETE FROM users WHERE id = 11",
    "UPDATE sharing_defaults SET access = 'public_read' WHERE entity = 'deals'",
    "DELETE FROM sharing_rules WHERE id = (SELECT min(id) FROM sharing_rules)",
    ("INSERT INTO sharing_rules (name, entity, kind, field, value, grantee_role_id, access) "
     "VALUES ('x', 'deals', 'criteria', 'stage', 'won', 3, 'read')"),
    "UPDATE sharing_rules SET access = 'edit'",
]
NOT_BUMPING = [
    "INSERT INTO leads (id, name, status, owner_id) VALUES (100, 'new', 'new', 4)",
    "UPDATE leads SET owner_id = 7 WHERE id = 1",
    "UPDATE leads SET industry = 'retail', status = 'won' WHERE id = 3",
    "DELETE FROM leads WHERE id = 6",
    "UPDATE deals SET account_id = 2 WHERE id = 1",
    "UPDATE accounts SET owner_id = 3 WHERE id = 1",
    "UPDATE users SET full_name = 'Renamed', email = 'x@example.com' WHERE id = 4",
]


@pytest.mark.parametrize("statement", BUMPING)
def test_changes_to_sharing_inputs_bump_the_epoch(organization, crm_db, statement):
    with crm_db.connection().cursor() as cur:
        before = _epoch(cur)
        cur.execute(statement)
        assert cur.rowcount >= 1
        after = _epoch(cur)
    assert after[0] > before[0] and after[1] != before[1]


@pytest.mark.parametrize("statement", NOT_BUMPING)
def test_record_writes_leave_the_epoch_alone(organization, crm_db, statement):
    """Compiled visibilities never contain records, so record writes invalidate nothing."""
    with crm_db.connection().cursor() as cur:
        before = _epoch(cur)
        cur.execute(statement)
        assert cur.rowcount == 1
        assert _epoch(cur) == before


def test_a_rolled_back_change_leaves_the_epoch_alone(organization, migrated_database_url):
    conn = psycopg2.connect(migrated_database_url)
    with conn.cursor() as cur:
        before = _epoch(cur)
        cur.execute("DELETE FROM sharing_rules")
        conn.rollback()
        assert _epoch(cur) == before
    conn.close()


def test_role_cycles_are_refused(organization, crm_db):
    with pytest.raises(peewee.IntegrityError, match="role 2 cannot be placed under role 4"):
        crm_db.execute_sql("UPDATE roles SET parent_id = 4 WHERE id = 2")
    with pytest.raises(peewee.IntegrityError):
        crm_db.execute_sql("UPDATE roles SET parent_id = 1 WHERE id = 1")


def test_rules_test_only_facet_fields_and_are_owner_or_criteria(organization, crm_db):
    with pytest.raises(peewee.IntegrityError, match="sharing_rules_criteria_field"):
        crm_db.execute_sql("INSERT INTO sharing_rules (name, entity, kind, field, value, grantee_role_id, access) "
                           "VALUES ('x', 'deals', 'criteria', 'amount', '5', 3, 'read')")
    with pytest.raises(peewee.IntegrityError, match="sharing_rules_owner_or_criteria"):
        crm_db.execute_sql("INSERT INTO sharing_rules (name, entity, kind, field, value, owner_role_id, "
                           "grantee_role_id, access) VALUES ('x', 'deals', 'owner', 'stage', 'won', 3, 3, 'read')")


def test_sharing_models_describe_the_migrated_schema(migrated_database_url):
    from crmtasks.sharing.models import SHARING_MODELS

    with psycopg2.connect(migrated_database_url) as conn, conn.cursor() as cur:
        for model in SHARING_MODELS:
            cur.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s",
                        (model._meta.table_name,))
            assert {field.column_name for field in model._meta.sorted_fields} == {row[0] for row in cur.fetchall()}


# -- the rules API -------------------------------------------------------------

def test_rules_api_changes_access_at_once(organization):
    assert sharing.can_access(AGENT, "leads", 3) is False
    rule_id = sharing_rules.add_owner_rule("west managers to support", "leads", owner_role_id=5, grantee_role_id=7,
                                           access="read", grantee_subordinates=True)
    assert sharing.can_access(AGENT, "leads", 3) is True
    assert sharing.can_access(AGENT, "leads", 4) is False  # no owner subordinates
    assert sharing_rules.delete_rule(rule_id) is True
    assert sharing_rules.delete_rule(rule_id) is False
    assert sharing.can_access(AGENT, "leads", 3) is False
    sharing_rules.add_criteria_rule("open deals to east", "deals", "stage", "open", grantee_role_id=3, access="edit")
    assert sharing.can_access(MGR_EAST, "deals", 2, "edit") is True
    sharing_rules.set_default("contacts", "public_read_write")
    assert sharing_rules.defaults()["contacts"] == "public_read_write"
    assert sharing.can_access(NOBODY, "contacts", 1, "edit") is True
    assert [rule["name"] for rule in sharing_rules.list_rules()][-1] == "open deals to east"


@pytest.mark.parametrize("call,message", [
    (lambda: sharing_rules.set_default("leads", "open"), "unknown default access 'open'"),
    (lambda: sharing_rules.add_owner_rule("x", "lead", 1, 2, "read"), "unknown entity 'lead'"),
    (lambda: sharing_rules.add_owner_rule("x", "leads", 1, 2, "write"), "unknown rule access 'write'"),
    (lambda: sharing_rules.add_criteria_rule("x", "deals", "amount", "5", 2, "read"),
     "deals rules may test stage, not 'amount'"),
    (lambda: sharing_rules.add_criteria_rule("x", "leads", "status", 5, 2, "read"), "a criteria value is text"),
])
def test_rules_api_refuses_bad_input(crm_db, call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_sharing_commands(organization):
    import json

    from click.testing import CliRunner

    from crmtasks.cli import main

    runner = CliRunner()
    allowed = runner.invoke(main, ["sharing", "check", str(SUPPORT), "leads", "3"])
    assert (allowed.exit_code, allowed.output) == (0, f"user {SUPPORT} may read leads 3\n")
    denied = runner.invoke(main, ["sharing", "check", str(SUPPORT), "leads", "3", "--level", "edit"])
    assert (denied.exit_code, denied.output) == (1, f"user {SUPPORT} may NOT edit leads 3\n")
    shown = json.loads(runner.invoke(main, ["sharing", "show", "--json"]).output)
    assert shown["defaults"] == {"leads": "private", "deals": "private", "accounts": "private", "contacts": "private"}
    assert len(shown["rules"]) == len(RULES)
    user = json.loads(runner.invoke(main, ["sharing", "show", str(GONE), "--json"]).output)
    assert user["active"] is False
