"""Sharing: who may read or edit which CRM record, checked fast and never wrong.

The model (migration 0006_sharing_rules.sql): an organization-wide default
per entity, the role hierarchy, owner- and criteria-based sharing rules, and
implicit read access to an account's contacts and deals for the account's
owner and the users above them. The API:

- ``can_access(user_id, entity, record_id, level="read", connection=None) -> bool``;
  ``can_access_many(user_id, entity, record_ids, level="read") -> set[int]``
  (a page of records, one round trip).
- ``visible(user_id, entity, alias=None, level="read", cursor=None)``: a
  ``psycopg2.sql.Composable`` WHERE condition keeping the rows the user may
  see; ``visible_expression(...)``: the same as a peewee expression;
  ``visibility(user_id, cursor=None)``: the compiled visibility itself.
- ``sync()``: read-your-writes in ``notify`` mode (CRMTASKS_SHARING_CONSISTENCY).

Each process has one checker (``checker()``); crmtasks.sharing.checker says
how each consistency mode stays right.
"""

from __future__ import annotations

import peewee
from psycopg2 import sql

from crmtasks.sharing.checker import MAX_BATCH, AccessChecker, SharingInFlux
from crmtasks.sharing.entities import ACCESS_LEVELS, DEFAULT_ACCESS, ENTITIES
from crmtasks.sharing.process import checker, make_checker
from crmtasks.sharing.visibility import Visibility

__all__ = [
    "ACCESS_LEVELS", "DEFAULT_ACCESS", "ENTITIES", "MAX_BATCH", "AccessChecker", "SharingInFlux", "Visibility",
    "can_access", "can_access_many", "checker", "make_checker", "sync", "visibility", "visible", "visible_expression",
]


def can_access(user_id: int, entity: str, record_id: int, level: str = "read", *, connection=None) -> bool:
    """True when user ``user_id`` may ``level`` (``read`` or ``edit``) record ``record_id`` of ``entity`` now.

    Runs on ``connection`` (a psycopg2 connection of the caller's) when given, else on a pooled one
    borrowed for this call only.
    """
    return checker().can_access(user_id, entity, record_id, level, connection=connection)


def can_access_many(user_id: int, entity: str, record_ids, level: str = "read", *, connection=None) -> set[int]:
    """The ids among ``record_ids`` (at most MAX_BATCH) that ``user_id`` may ``level`` now; one round trip."""
    return checker().can_access_many(user_id, entity, record_ids, level, connection=connection)


def sync(timeout_s: float = 5.0) -> bool:
    """Return once this process has applied every sharing change committed before the call (see AccessChecker.sync)."""
    return checker().sync(timeout_s)


def visible(user_id: int, entity: str, alias: str | None = None, level: str = "read", *,
            cursor=None) -> sql.Composable:
    """WHERE condition over ``entity``'s table alias ``alias`` (default: the table name) keeping exactly
    the rows ``user_id`` may ``level``. Pass the search's ``cursor`` to read the rules in its snapshot."""
    return checker().visible(user_id, entity, alias, level, cursor=cursor)


def visible_expression(user_id: int, entity: str, level: str = "read") -> peewee.ColumnBase:
    """``visible`` as a peewee expression over crmtasks.models' model of ``entity``."""
    return checker().visible_expression(user_id, entity, level)


def visibility(user_id: int, *, cursor=None) -> Visibility:
    """The compiled visibility of ``user_id`` as of now (or as of ``cursor``'s transaction)."""
    return checker().visibility(user_id, cursor=cursor)
