"""Changing the sharing model: organization-wide defaults and sharing rules.

Plain functions over the peewee models, validating input before any SQL
(ValueError naming what is wrong). Each change commits with its epoch bump
(the tables' triggers), so it counts for the very next check everywhere.
"""

from __future__ import annotations

from crmtasks.pg import db
from crmtasks.sharing.entities import (
    ACCESS_LEVELS,
    DEFAULT_ACCESS,
    ENTITIES,
    get_entity,
)
from crmtasks.sharing.models import SharingDefault, SharingRule


def set_default(entity: str, access: str) -> None:
    """Set ``entity``'s organization-wide default: ``private``, ``public_read`` or ``public_read_write``."""
    get_entity(entity)
    if access not in DEFAULT_ACCESS:
        raise ValueError(f"unknown default access {access!r}; expected one of {', '.join(DEFAULT_ACCESS)}")
    with db.connection():
        db.database.execute_sql(
            "INSERT INTO sharing_defaults (entity, access) VALUES (%s, %s) "
            "ON CONFLICT (entity) DO UPDATE SET access = EXCLUDED.access, updated_at = now()",
            (entity, access),
        )


def defaults() -> dict[str, str]:
    """entity -> organization-wide default (entities without a row are private)."""
    with db.connection():
        stored = {row.entity: row.access for row in SharingDefault.select()}
    return {name: stored.get(name, "private") for name in ENTITIES}


def _check_access(access: str) -> str:
    if access not in ACCESS_LEVELS:
        raise ValueError(f"unknown rule access {access!r}; expected one of {', '.join(ACCESS_LEVELS)}")
    return access


def add_owner_rule(name: str, entity: str, owner_role_id: int, grantee_role_id: int, access: str, *,
                   owner_subordinates: bool = False, grantee_subordinates: bool = False) -> int:
    """Share ``entity`` records owned by users in role ``owner_role_id`` (and below, with
    ``owner_subordinates``) with the users in role ``grantee_role_id`` (and below, with
    ``grantee_subordinates``) at ``access`` (read/edit). Returns the rule id."""
    get_entity(entity)
    _check_access(access)
    with db.connection():
        return SharingRule.insert(
            name=name, entity=entity, kind="owner", owner_role=owner_role_id,
            owner_include_subordinates=bool(owner_subordinates), grantee_role=grantee_role_id,
            grantee_include_subordinates=bool(grantee_subordinates), access=access,
        ).execute()


def add_criteria_rule(name: str, entity: str, field: str, value: str, grantee_role_id: int, access: str, *,
                      grantee_subordinates: bool = False) -> int:
    """Share ``entity`` records whose ``field`` (a facet field: leads status/industry/source/rating,
    deals stage, accounts industry/region, contacts lead_source) equals ``value`` with the users in
    role ``grantee_role_id`` (and below, with ``grantee_subordinates``) at ``access``. Returns the rule id."""
    shared = get_entity(entity)
    _check_access(access)
    if field not in shared.criteria_fields:
        raise ValueError(f"{entity} rules may test {', '.join(shared.criteria_fields)}, not {field!r}")
    if not isinstance(value, str):
        raise ValueError(f"a criteria value is text, got {type(value).__name__} {value!r}"[:120])  # noqa: TRY004
    with db.connection():
        return SharingRule.insert(
            name=name, entity=entity, kind="criteria", field=field, value=value, grantee_role=grantee_role_id,
            grantee_include_subordinates=bool(grantee_subordinates), access=access,
        ).execute()


def delete_rule(rule_id: int) -> bool:
    """Remove rule ``rule_id``; True when it existed."""
    with db.connection():
        return SharingRule.delete().where(SharingRule.id == rule_id).execute() > 0


def list_rules() -> list[dict]:
    """Every rule, oldest first, as dicts (column -> value)."""
    with db.connection():
        return list(SharingRule.select().order_by(SharingRule.id).dicts())
