"""Helpers of the sharing tests: an organization as plain Python data, written to the database,
and the reference evaluator: the sharing rules applied naively, record by record, in Python.

The reference evaluator is written from the rules as stated (issue 6 and the
migration's header), not from crmtasks.sharing: it walks parent pointers one
role at a time and loops over every rule for every record.
"""

from __future__ import annotations

import dataclasses

import psycopg2

ENTITY_NAMES = ("leads", "deals", "accounts", "contacts")
# Criteria fields and the small pools of values the random organizations use (None: no value).
FIELD_VALUES = {
    "leads": {"status": ["new", "working", "won"], "industry": ["tech", "retail", None],
              "source": ["web", "event", None], "rating": ["hot", "cold", None]},
    "deals": {"stage": ["open", "won"]},
    "accounts": {"industry": ["tech", "retail", None], "region": ["east", "west", None]},
    "contacts": {"lead_source": ["web", "event", None]},
}
NOT_NULL_FIELDS = {("leads", "status"), ("deals", "stage")}


@dataclasses.dataclass
class Rule:
    entity: str
    kind: str  # owner | criteria
    access: str  # read | edit
    grantee_role: int
    grantee_subordinates: bool
    owner_role: int | None = None
    owner_subordinates: bool = False
    field: str | None = None
    value: str | None = None


@dataclasses.dataclass
class Org:
    """roles: id -> parent id; users: id -> (role id, active); records: entity -> id -> column -> value."""

    roles: dict[int, int | None]
    users: dict[int, tuple[int | None, bool]]
    defaults: dict[str, str]
    rules: list[Rule]
    records: dict[str, dict[int, dict]]


# -- the reference evaluator ------------------------------------------------

def _strictly_below(org: Org, role: int | None, above: int | None) -> bool:
    """True when ``role`` is a descendant of ``above`` (not equal), walking up one parent at a time."""
    if role is None or above is None:
        return False
    current = org.roles[role]
    while current is not None:
        if current == above:
            return True
        current = org.roles[current]
    return False


def _role_of(org: Org, user_id: int | None) -> int | None:
    if user_id is None or user_id not in org.users:
        return None
    return org.users[user_id][0]


def _owner_sees(org: Org, viewer: int, owner: int | None) -> bool:
    """Owning, or being above the owner in the role hierarchy."""
    if owner is None:
        return False
    return owner == viewer or _strictly_below(org, _role_of(org, owner), _role_of(org, viewer))


def reference_access(org: Org, user_id: int, entity: str, record_id: int, level: str) -> bool:
    user = org.users.get(user_id)
    if user is None or not user[1]:
        return False  # unknown and inactive users see nothing
    record = org.records[entity].get(record_id)
    if record is None:
        return False
    default = org.defaults.get(entity, "private")
    if default == "public_read_write" or (default == "public_read" and level == "read"):
        return True
    if _owner_sees(org, user_id, record["owner_id"]):
        return True  # owner and the hierarchy above the owner: read and edit
    user_role = user[0]
    for rule in org.rules:
        if rule.entity != entity or (level == "edit" and rule.access != "edit"):
            continue
        granted = user_role is not None and (
            user_role == rule.grantee_role
            or (rule.grantee_subordinates and _strictly_below(org, user_role, rule.grantee_role)))
        if not granted:
            continue
        if rule.kind == "owner":
            owner_role = _role_of(org, record["owner_id"])
            if owner_role is not None and (owner_role == rule.owner_role or (
                    rule.owner_subordinates and _strictly_below(org, owner_role, rule.owner_role))):
                return True
        elif record.get(rule.field) == rule.value:
            return True
    if level == "read" and entity in ("contacts", "deals"):
        account = org.records["accounts"].get(record["account_id"])
        if account is not None and _owner_sees(org, user_id, account["owner_id"]):
            return True  # implicit child access: the account's owner and those above them read it
    return False


# -- writing an organization -------------------------------------------------

RESET_SQL = """
DELETE FROM sharing_rules; DELETE FROM deals; DELETE FROM contacts; DELETE FROM leads; DELETE FROM accounts;
DELETE FROM users; UPDATE roles SET parent_id = NULL; DELETE FROM roles;
"""


def write_org(url: str, org: Org) -> None:
    """Replace the CRM and sharing tables' rows with ``org`` (one transaction)."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(RESET_SQL)
        for role_id in sorted(org.roles):
            cur.execute("INSERT INTO roles (id, name, parent_id) VALUES (%s, %s, %s)",
                        (role_id, f"role {role_id}", org.roles[role_id]))
        for user_id, (role_id, active) in sorted(org.users.items()):
            cur.execute("INSERT INTO users (id, username, full_name, role_id, is_active) VALUES (%s, %s, %s, %s, %s)",
                        (user_id, f"user{user_id}", f"User {user_id}", role_id, active))
        for entity in ENTITY_NAMES:
            cur.execute("UPDATE sharing_defaults SET access = %s WHERE entity = %s",
                        (org.defaults.get(entity, "private"), entity))
        for record_id, row in sorted(org.records["accounts"].items()):
            cur.execute("INSERT INTO accounts (id, name, owner_id, industry, region) VALUES (%s, 'a', %s, %s, %s)",
                        (record_id, row["owner_id"], row["industry"], row["region"]))
        for record_id, row in sorted(org.records["contacts"].items()):
            cur.execute("INSERT INTO contacts (id, name, owner_id, account_id, lead_source) VALUES (%s, 'c', %s, %s, %s)",
                        (record_id, row["owner_id"], row["account_id"], row["lead_source"]))
        for record_id, row in sorted(org.records["leads"].items()):
            cur.execute("INSERT INTO leads (id, name, owner_id, status, industry, source, rating) "
                        "VALUES (%s, 'l', %s, %s, %s, %s, %s)",
                        (record_id, row["owner_id"], row["status"], row["industry"], row["source"], row["rating"]))
        for record_id, row in sorted(org.records["deals"].items()):
            cur.execute("INSERT INTO deals (id, name, owner_id, account_id, stage) VALUES (%s, 'd', %s, %s, %s)",
                        (record_id, row["owner_id"], row["account_id"], row["stage"]))
        for rule in org.rules:
            insert_rule(cur, rule)


def reset_defaults(url: str) -> None:
    """Every entity back to private, as a fresh database has it (other tests expect that)."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("UPDATE sharing_defaults SET access = 'private' WHERE access <> 'private'")


def insert_rule(cur, rule: Rule) -> int:
    cur.execute(
        "INSERT INTO sharing_rules (name, entity, kind, owner_role_id, owner_include_subordinates, field, value, "
        "grantee_role_id, grantee_include_subordinates, access) VALUES ('r', %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "RETURNING id",
        (rule.entity, rule.kind, rule.owner_role, rule.owner_subordinates, rule.field, rule.value,
         rule.grantee_role, rule.grantee_subordinates, rule.access))
    return cur.fetchone()[0]
