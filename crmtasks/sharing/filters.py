"""A compiled visibility as a query filter: SQL for psycopg2, or a peewee expression.

Both say the same thing as ``Visibility.allows`` for every row, evaluated by
PostgreSQL against the rows' current values:

    owner_id = ANY(<owner ids>)                  -- ownership, hierarchy, owner-based rules
    OR <field> = ANY(<values>)   (per field)     -- criteria-based rules
    OR EXISTS (account owned by <hierarchy>)     -- contacts and deals, read only

``TRUE`` when the organization-wide default opens the entity at that level,
``FALSE`` for an inactive user or when nothing is granted. The owner test
uses the ``<table>_owner_id_idx`` indexes. Every value is a ``sql.Literal``
(arrays with an explicit cast): the condition can be spliced into any
composed statement without parameters to keep in step.
"""

from __future__ import annotations

import peewee
from psycopg2 import sql

from crmtasks.models import Account, Contact, Deal, Lead
from crmtasks.sharing.entities import ENTITIES, READ
from crmtasks.sharing.visibility import Visibility

# Alias of the account row in the child-access subquery; unlikely to clash with a caller's aliases.
PARENT_ALIAS = "sharing_parent_account"


def _values_by_field(pairs) -> dict[str, list[str]]:
    by_field: dict[str, list[str]] = {}
    for field, value in sorted(pairs):
        by_field.setdefault(field, []).append(value)
    return by_field


def condition(visibility: Visibility, entity: str, alias: str, level: str = READ) -> sql.Composable:
    """The rows of ``entity`` (table alias ``alias``) that ``visibility`` allows at ``level``, as a WHERE condition."""
    shared = ENTITIES[entity]
    if not visibility.active:
        return sql.SQL("FALSE")
    grants = visibility.grants(entity)
    if grants.public_allows(level):
        return sql.SQL("TRUE")
    parts = []
    owners = grants.owners(level)
    if owners:
        parts.append(sql.SQL("{} = ANY({}::bigint[])").format(sql.Identifier(alias, "owner_id"),
                                                               sql.Literal(sorted(owners))))
    for field, values in _values_by_field(grants.criteria(level)).items():
        parts.append(sql.SQL("{} = ANY({}::text[])").format(sql.Identifier(alias, field), sql.Literal(values)))
    if level == READ and shared.account_column and visibility.hierarchy_owners:
        parent = sql.Identifier(PARENT_ALIAS)
        parts.append(sql.SQL(
            "EXISTS (SELECT 1 FROM accounts AS {parent} WHERE {parent}.id = {account} "
            "AND {parent}.owner_id = ANY({owners}::bigint[]))"
        ).format(parent=parent, account=sql.Identifier(alias, shared.account_column),
                 owners=sql.Literal(sorted(visibility.hierarchy_owners))))
    if not parts:
        return sql.SQL("FALSE")
    return sql.SQL("({})").format(sql.SQL(" OR ").join(parts))


def expression(visibility: Visibility, entity: str, level: str = READ) -> peewee.ColumnBase:
    """The same filter as a peewee expression over the entity's model (crmtasks.models)."""
    model = {"leads": Lead, "deals": Deal, "accounts": Account, "contacts": Contact}[entity]
    shared = ENTITIES[entity]
    if not visibility.active:
        return peewee.SQL("FALSE")
    grants = visibility.grants(entity)
    if grants.public_allows(level):
        return peewee.SQL("TRUE")
    parts = []
    owners = grants.owners(level)
    if owners:
        parts.append(model.owner.in_(sorted(owners)))
    for field, values in _values_by_field(grants.criteria(level)).items():
        parts.append(getattr(model, field).in_(values))
    if level == READ and shared.account_column and visibility.hierarchy_owners:
        parent = Account.alias(PARENT_ALIAS)
        parts.append(model.account.in_(
            parent.select(parent.id).where(parent.owner.in_(sorted(visibility.hierarchy_owners)))))
    if not parts:
        return peewee.SQL("FALSE")
    combined = parts[0]
    for part in parts[1:]:
        combined = combined | part
    return combined
