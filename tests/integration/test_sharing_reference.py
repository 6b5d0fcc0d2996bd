"""can_access, can_access_many, visible, visible_expression and the user-filtered search agree with the
reference evaluator on random organizations, in both consistency modes.

Each example writes a random organization (a role forest, users active or
not, org defaults, owner and criteria rules, records with owners, fields and
accounts), compares every (user, record, level) answer and every filter
with the naive evaluator of tests/integration/sharing_support.py, then makes
one random change (the kinds a revocation can come from) and compares again
with the same process's caches still warm from the first round. In notify
mode one checker serves every example, and ``sync()`` follows each write.
"""

from __future__ import annotations

import dataclasses

import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st
from psycopg2 import sql

from crmtasks import sharing
from crmtasks.models import Account, Contact, Deal, Lead
from crmtasks.search.query import faceted_search
from crmtasks.settings import get_settings
from crmtasks.sharing import process as sharing_process
from tests.integration.sharing_support import (
    ENTITY_NAMES,
    FIELD_VALUES,
    NOT_NULL_FIELDS,
    Org,
    Rule,
    insert_rule,
    reference_access,
    reset_defaults,
    write_org,
)

MODELS = {"leads": Lead, "deals": Deal, "accounts": Account, "contacts": Contact}
LEVELS = ("read", "edit")
UNKNOWN_USER = 999
UNKNOWN_RECORD = 9999


def _mostly(strategy):
    """``strategy``'s values four times in five, else None."""
    return st.one_of(strategy, strategy, strategy, strategy, st.none())


@st.composite
def rules(draw, role_ids: list[int], entities=ENTITY_NAMES) -> Rule:
    entity = draw(st.sampled_from(entities))
    kind = draw(st.sampled_from(("owner", "criteria")))
    rule = Rule(entity=entity, kind=kind, access=draw(st.sampled_from(LEVELS)),
                grantee_role=draw(st.sampled_from(role_ids)), grantee_subordinates=draw(st.booleans()))
    if kind == "owner":
        rule.owner_role = draw(st.sampled_from(role_ids))
        rule.owner_subordinates = draw(st.booleans())
    else:
        rule.field = draw(st.sampled_from(sorted(FIELD_VALUES[entity])))
        rule.value = draw(st.sampled_from([v for v in FIELD_VALUES[entity][rule.field] if v is not None]))
    return rule


def _record(draw, entity: str, user_ids: list[int], account_ids: list[int]) -> dict:
    row = {"owner_id": draw(_mostly(st.sampled_from(user_ids)))}
    for field, values in FIELD_VALUES[entity].items():
        row[field] = draw(st.sampled_from(values))
    if entity in ("contacts", "deals"):
        row["account_id"] = draw(_mostly(st.sampled_from(account_ids))) if account_ids else None
    return row


@st.composite
def orgs(draw) -> Org:
    role_count = draw(st.integers(0, 8))
    roles: dict[int, int | None] = {}
    for role_id in range(1, role_count + 1):  # a parent always has a smaller id: a forest, mostly deep
        roles[role_id] = draw(_mostly(st.sampled_from(range(1, role_id)))) if role_id > 1 else None
    role_ids = sorted(roles)
    user_count = draw(st.integers(1, 8))
    users = {user_id: (draw(_mostly(st.sampled_from(role_ids))) if role_ids else None,
                       draw(st.sampled_from((True, True, True, False))))
             for user_id in range(1, user_count + 1)}
    user_ids = sorted(users)
    # mostly private: an open default would hide what the hierarchy and the rules do
    defaults = {entity: draw(st.sampled_from(("private",) * 6 + ("public_read", "public_read_write")))
                for entity in ENTITY_NAMES}
    records: dict[str, dict[int, dict]] = {}
    records["accounts"] = {i: _record(draw, "accounts", user_ids, []) for i in range(1, draw(st.integers(0, 5)) + 1)}
    account_ids = sorted(records["accounts"])
    for entity in ("contacts", "leads", "deals"):
        records[entity] = {i: _record(draw, entity, user_ids, account_ids)
                           for i in range(1, draw(st.integers(0, 6)) + 1)}
    # rules on the entities that have records: a rule on an empty entity tests nothing
    ruled = [entity for entity in ENTITY_NAMES if records[entity]] or list(ENTITY_NAMES)
    rule_list = draw(st.lists(rules(role_ids, ruled), min_size=1, max_size=10)) if role_ids else []
    return Org(roles=roles, users=users, defaults=defaults, rules=rule_list, records=records)


def _subtree(org: Org, role: int) -> set[int]:
    found = {role}
    changed = True
    while changed:
        changed = False
        for child, parent in org.roles.items():
            if parent in found and child not in found:
                found.add(child)
                changed = True
    return found


def apply_random_change(data, org: Org, url: str) -> str:
    """Make one random change to the sharing inputs or to a record, in ``org`` and in the database."""
    choices = ["default", "user_active", "user_role"]
    if org.rules:
        choices.append("delete_rule")
    if org.roles:
        choices += ["move_role", "add_rule"]
    if any(org.records[e] for e in ENTITY_NAMES):
        choices += ["reassign", "field", "account"]
    kind = data.draw(st.sampled_from(choices), label="change")
    role_ids, user_ids = sorted(org.roles), sorted(org.users)
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        if kind == "default":
            entity = data.draw(st.sampled_from(ENTITY_NAMES))
            access = data.draw(st.sampled_from(("private", "public_read", "public_read_write")))
            org.defaults[entity] = access
            cur.execute("UPDATE sharing_defaults SET access = %s WHERE entity = %s", (access, entity))
        elif kind in ("user_active", "user_role"):
            user_id = data.draw(st.sampled_from(user_ids))
            role, active = org.users[user_id]
            if kind == "user_active":
                active = not active
            else:
                role = data.draw(st.none() | st.sampled_from(role_ids)) if role_ids else None
            org.users[user_id] = (role, active)
            cur.execute("UPDATE users SET role_id = %s, is_active = %s WHERE id = %s", (role, active, user_id))
        elif kind == "delete_rule":
            index = data.draw(st.integers(0, len(org.rules) - 1))
            org.rules.pop(index)
            cur.execute("DELETE FROM sharing_rules WHERE id = (SELECT id FROM sharing_rules ORDER BY id OFFSET %s LIMIT 1)",
                        (index,))
        elif kind == "add_rule":
            rule = data.draw(rules(role_ids))
            org.rules.append(rule)
            insert_rule(cur, rule)
        elif kind == "move_role":
            role = data.draw(st.sampled_from(role_ids))
            allowed = [r for r in role_ids if r not in _subtree(org, role)]
            parent = data.draw(st.none() | st.sampled_from(allowed)) if allowed else None
            org.roles[role] = parent
            cur.execute("UPDATE roles SET parent_id = %s WHERE id = %s", (parent, role))
        else:
            entity = data.draw(st.sampled_from([e for e in ENTITY_NAMES if org.records[e]]))
            record_id = data.draw(st.sampled_from(sorted(org.records[entity])))
            row = org.records[entity][record_id]
            if kind == "reassign":
                column, value = "owner_id", data.draw(st.none() | st.sampled_from(user_ids))
            elif kind == "account" and entity in ("contacts", "deals") and org.records["accounts"]:
                column, value = "account_id", data.draw(st.none() | st.sampled_from(sorted(org.records["accounts"])))
            else:
                column = data.draw(st.sampled_from(sorted(FIELD_VALUES[entity])))
                values = [v for v in FIELD_VALUES[entity][column] if v is not None or (entity, column) not in NOT_NULL_FIELDS]
                value = data.draw(st.sampled_from(values))
            row[column] = value
            cur.execute(sql.SQL("UPDATE {} SET {} = %s WHERE id = %s").format(sql.Identifier(entity), sql.Identifier(column)),
                        (value, record_id))
    return kind


def _rule_only_grants(org: Org) -> int:
    """How many (user, record, level) answers only the rules and defaults make true: steers generation to rich organizations."""
    bare = Org(roles=org.roles, users=org.users, defaults={}, rules=[], records=org.records)
    return sum(reference_access(org, u, e, r, level) and not reference_access(bare, u, e, r, level)
               for u in org.users for e in ENTITY_NAMES for r in org.records[e] for level in LEVELS)


def _check_can_access(org: Org, checker) -> None:
    for user_id in [*org.users, UNKNOWN_USER]:
        for entity in ENTITY_NAMES:
            for level in LEVELS:
                asked = [*org.records[entity], UNKNOWN_RECORD]
                expected = {record_id for record_id in asked if reference_access(org, user_id, entity, record_id, level)}
                for record_id in asked:
                    got = checker.can_access(user_id, entity, record_id, level)
                    assert got == (record_id in expected), (user_id, entity, record_id, level)
                assert checker.can_access_many(user_id, entity, asked, level) == expected, (user_id, entity, level, "many")


def _check_search(org: Org) -> None:
    """The user-filtered search (through the process's checker) keeps exactly what the reference lets each user read."""
    for user_id in sorted(org.users):
        for entity in ENTITY_NAMES:
            expected = {record_id for record_id in org.records[entity]
                        if reference_access(org, user_id, entity, record_id, "read")}
            result = faceted_search(entity, user_id=user_id, per_page=100)
            assert {record["id"] for record in result.records} == expected, (user_id, entity, "search")


def _check_filters(org: Org, checker, database) -> None:
    conn = database.connection()
    for user_id in [*org.users, UNKNOWN_USER]:
        for entity in ENTITY_NAMES:
            for level in LEVELS:
                expected = {record_id for record_id in org.records[entity]
                            if reference_access(org, user_id, entity, record_id, level)}
                condition = checker.visible(user_id, entity, "r", level)
                with conn.cursor() as cur:
                    cur.execute(sql.SQL("SELECT r.id FROM {} AS r WHERE {}").format(sql.Identifier(entity), condition))
                    assert {row[0] for row in cur.fetchall()} == expected, (user_id, entity, level, "sql")
                model = MODELS[entity]
                found = {row.id for row in model.select(model.id).where(checker.visible_expression(user_id, entity, level))}
                assert found == expected, (user_id, entity, level, "peewee")


@pytest.fixture(autouse=True)
def _private_defaults_afterwards(migrated_database_url):
    yield
    reset_defaults(migrated_database_url)


_EXAMPLE_SETTINGS = settings(max_examples=35, deadline=None,
                             suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                    HealthCheck.data_too_large])


@_EXAMPLE_SETTINGS
@given(org=orgs(), data=st.data())
def test_checks_and_filters_agree_with_the_reference_before_and_after_a_change(crm_db, migrated_database_url, org, data):
    target(float(_rule_only_grants(org)), label="answers only rules and defaults make true")
    write_org(migrated_database_url, org)
    cached = sharing.make_checker(get_settings())
    uncached = sharing.make_checker(get_settings(), local=False, shared=False)
    _check_can_access(org, cached)
    _check_filters(org, uncached, crm_db)
    change = apply_random_change(data, org, migrated_database_url)
    _check_can_access(org, cached)  # warm from the first round: must notice the change
    _check_filters(org, cached, crm_db)
    _check_search(org)
    assert change


@pytest.fixture()
def notify_checker(crm_db, monkeypatch):
    """The process's checker (behind can_access, visible and search) in notify mode, listening."""
    notify_settings = dataclasses.replace(get_settings(), sharing_consistency="notify")
    monkeypatch.setattr(sharing_process, "get_settings", lambda: notify_settings)
    checker = sharing.checker()
    assert checker.consistency == "notify" and checker.listener.wait_listening(10)
    yield checker
    checker.close()


@_EXAMPLE_SETTINGS
@given(org=orgs(), data=st.data())
def test_notify_mode_agrees_with_the_reference_after_sync(notify_checker, crm_db, migrated_database_url, org, data):
    # One checker for every example: its memory outlives whole organizations replaced under it.
    write_org(migrated_database_url, org)
    assert sharing.sync() is True
    _check_can_access(org, notify_checker)
    remembered = notify_checker.counts["memory_answers"]
    _check_can_access(org, notify_checker)  # now from memory (records that exist; a missing one is never remembered)
    if any(org.records.values()):
        assert notify_checker.counts["memory_answers"] > remembered
    change = apply_random_change(data, org, migrated_database_url)
    assert sharing.sync() is True
    _check_can_access(org, notify_checker)
    _check_filters(org, notify_checker, crm_db)
    _check_search(org)
    assert change


@pytest.mark.parametrize("default,level,expected", [
    ("private", "read", False), ("public_read", "read", True), ("public_read", "edit", False),
    ("public_read_write", "edit", True),
])
def test_org_defaults_open_records_to_every_active_user_only(crm_db, migrated_database_url, default, level, expected):
    org = Org(roles={1: None}, users={1: (1, True), 2: (1, True), 3: (1, False)},
              defaults={"leads": default}, rules=[],
              records={"leads": {1: {"owner_id": 1, "status": "new", "industry": None, "source": None, "rating": None}},
                       "deals": {}, "accounts": {}, "contacts": {}})
    write_org(migrated_database_url, org)
    assert sharing.can_access(2, "leads", 1, level) is expected
    assert sharing.can_access(3, "leads", 1, level) is False  # inactive: nothing, even public records
    assert sharing.can_access(1, "leads", 1, "edit") is True  # the owner


def test_bad_arguments_are_refused_before_any_sql(crm_db):
    with pytest.raises(ValueError, match="unknown entity 'lead'; expected one of leads, deals, accounts, contacts"):
        sharing.can_access(1, "lead", 1)
    with pytest.raises(ValueError, match="unknown access level 'write'"):
        sharing.can_access(1, "leads", 1, "write")
    with pytest.raises(ValueError, match="record_id must be an int"):
        sharing.can_access(1, "leads", "1")
    with pytest.raises(ValueError, match="user_id must be an int"):
        sharing.visible(True, "leads")
    assert sharing.can_access(1, "leads", 2**70) is False
    assert sharing.can_access(-1, "leads", 1) is False
