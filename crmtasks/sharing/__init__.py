"""Sharing: who may read or edit which CRM record, checked fast and never wrong.

The model (migration 0006_sharing_rules.sql): an organization-wide default
per entity, the role hierarchy, owner- and criteria-based sharing rules, and
implicit read access to an account's contacts and deals for the account's
owner and the users above them. The API:

- ``can_access(user_id, entity, record_id, level="read", connection=None) -> bool``
- ``visible(user_id, entity, alias=None, level="read", cursor=None)``: a
  ``psycopg2.sql.Composable`` WHERE condition keeping the rows the user may
  see; ``visible_expression(...)``: the same as a peewee expression.
- ``visibility(user_id, cursor=None)``: the compiled visibility itself, for
  callers that build several conditions (``crmtasks.sharing.filters.condition``).

Each process has one checker (``checker()``) with a memory tier and a Redis
tier of compiled visibilities, both validated against ``sharing_epoch`` on
every call (see crmtasks.sharing.checker for why that is exact).
"""

from __future__ import annotations

import os

import peewee
from psycopg2 import sql

from crmtasks.redis_client import get_redis
from crmtasks.settings import Settings, get_settings
from crmtasks.sharing.cache import (
    LocalVisibilityCache,
    RedisVisibilityCache,
    VisibilityCache,
)
from crmtasks.sharing.checker import AccessChecker, SharingInFlux
from crmtasks.sharing.entities import ACCESS_LEVELS, DEFAULT_ACCESS, ENTITIES
from crmtasks.sharing.visibility import Visibility

__all__ = [
    "ACCESS_LEVELS", "DEFAULT_ACCESS", "ENTITIES", "AccessChecker", "SharingInFlux", "Visibility",
    "can_access", "checker", "make_checker", "visibility", "visible", "visible_expression",
]

_checker: tuple[int, Settings, AccessChecker] | None = None


def make_checker(settings: Settings, *, local: bool = True, shared: bool = True) -> AccessChecker:
    """A checker with the cache tiers asked for (both off: compile on every call)."""
    local_tier = LocalVisibilityCache(settings.sharing_local_cache_users) \
        if local and settings.sharing_local_cache_users > 0 else None
    shared_tier = RedisVisibilityCache(get_redis(settings), settings, settings.sharing_cache_ttl_s) if shared else None
    if local_tier is None and shared_tier is None:
        return AccessChecker(cache=None)
    return AccessChecker(cache=VisibilityCache(local_tier, shared_tier))


def checker() -> AccessChecker:
    """This process's checker (a new one after fork or when the settings change)."""
    global _checker
    settings = get_settings()
    if _checker is None or _checker[0] != os.getpid() or _checker[1] != settings:
        _checker = (os.getpid(), settings, make_checker(settings))
    return _checker[2]


def can_access(user_id: int, entity: str, record_id: int, level: str = "read", *, connection=None) -> bool:
    """True when user ``user_id`` may ``level`` (``read`` or ``edit``) record ``record_id`` of ``entity`` now.

    Runs on ``connection`` (a psycopg2 connection of the caller's) when given, else on a pooled one
    borrowed for this call only.
    """
    return checker().can_access(user_id, entity, record_id, level, connection=connection)


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
