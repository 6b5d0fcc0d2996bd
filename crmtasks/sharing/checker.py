"""Access checks and query filters for one user, with or without caches.

The protocol that makes them never wrong:
1. Read the record's facts and the current epoch in one statement (one snapshot).
2. Take the user's visibility at exactly that epoch: from a cache tier whose
   entry carries that epoch token, else compile it now.
3. A freshly compiled visibility may be newer than the record read in step 1
   (a sharing change committed in between): then read the record again until
   both are of one epoch, so the answer is that of one real state.
Any change to the sharing inputs commits together with its epoch bump, so a
check that starts after the commit sees the new token and cannot use an
entry compiled before it: "revoke, then check at once" is denied, from any
process, warm cache or not.
"""

from __future__ import annotations

import collections
import contextlib

import peewee
from psycopg2 import sql

from crmtasks.errors import CrmtasksError
from crmtasks.pg import db
from crmtasks.sharing import filters
from crmtasks.sharing.cache import VisibilityCache
from crmtasks.sharing.compile import compile_visibility
from crmtasks.sharing.entities import READ, check_level, get_entity
from crmtasks.sharing.records import fetch_record, read_epoch
from crmtasks.sharing.visibility import Epoch, Visibility

_BIGINT_MAX = 2**63 - 1
# Rounds of step 3 before giving up; each needs a sharing change committed
# between two statements of this check, so more than one is already rare.
MAX_ROUNDS = 5


class SharingInFlux(CrmtasksError):
    """The sharing inputs kept changing during one check; nothing was allowed. Retry."""


def _check_id(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an int, got {type(value).__name__} {value!r}"[:120])  # noqa: TRY004 - the API raises ValueError for every bad argument
    return value


def _in_range(value: int) -> bool:
    return 0 < value <= _BIGINT_MAX


class AccessChecker:
    """``can_access`` and ``visible`` over the bound database (crmtasks.pg.db).

    Parameters:
      cache(VisibilityCache|None): Where compiled visibilities are kept; None
        compiles one from the database for every call (the uncached baseline).

    ``counts['compiles']`` counts visibilities compiled by this checker.
    """

    def __init__(self, cache: VisibilityCache | None) -> None:
        self.cache = cache
        self.counts = collections.Counter()

    def _visibility_at(self, cursor, user_id: int, epoch: Epoch) -> Visibility:
        """The visibility at ``epoch`` from the cache, else compiled now (and then possibly newer than ``epoch``)."""
        if self.cache is not None:
            entry = self.cache.get(user_id, epoch)
            if entry is not None:
                return entry
        self.counts["compiles"] += 1
        visibility = compile_visibility(cursor, user_id)
        if self.cache is not None:
            self.cache.put(visibility)
        return visibility

    def can_access(self, user_id: int, entity: str, record_id: int, level: str = READ, *,
                   connection=None) -> bool:
        """True when user ``user_id`` may ``level`` (``read``/``edit``) record ``record_id`` of ``entity`` now.

        An unknown user or record, or an inactive user, gets False. ValueError
        for an unknown entity or level, or ids that are not ints. One round
        trip to PostgreSQL on a warm cache, on ``connection`` (a psycopg2
        connection of the caller's) or a pooled one borrowed for this call.
        """
        get_entity(entity)
        check_level(level)
        _check_id("user_id", user_id)
        _check_id("record_id", record_id)
        if not (_in_range(user_id) and _in_range(record_id)):
            return False
        with db.using_connection(connection) as conn, conn.cursor() as cursor:
            epoch, record = fetch_record(cursor, entity, record_id)
            visibility = self._visibility_at(cursor, user_id, epoch)
            for _ in range(MAX_ROUNDS):
                if visibility.epoch == epoch:
                    return visibility.allows(entity, level, record)
                epoch, record = fetch_record(cursor, entity, record_id)
                if visibility.epoch != epoch:
                    visibility = self._visibility_at(cursor, user_id, epoch)
        raise SharingInFlux(f"sharing rules changed {MAX_ROUNDS} times during one check of user {user_id}")

    def visibility(self, user_id: int, *, cursor=None) -> Visibility:
        """The current compiled visibility of ``user_id``.

        With ``cursor``, the epoch (and, on a miss, the compile) is read
        through it: inside the caller's REPEATABLE READ transaction, the
        visibility is then exactly that of the caller's snapshot.
        """
        _check_id("user_id", user_id)
        if not _in_range(user_id):
            user_id = 0  # no such user: compiles to "nothing", like any unknown id
        with contextlib.ExitStack() as stack:
            if cursor is None:
                cursor = stack.enter_context(stack.enter_context(db.using_connection()).cursor())
            # A compile may be newer than the epoch just read: it is then the
            # state as of the compile, later than the call began, which is fine.
            return self._visibility_at(cursor, user_id, read_epoch(cursor))

    def visible(self, user_id: int, entity: str, alias: str | None = None, level: str = READ, *,
                cursor=None) -> sql.Composable:
        """A WHERE condition on ``entity``'s rows (table alias ``alias``, default the table name) that
        keeps exactly the rows ``user_id`` may ``level``; see crmtasks.sharing.filters."""
        shared = get_entity(entity)
        check_level(level)
        return filters.condition(self.visibility(user_id, cursor=cursor), entity, alias or shared.table, level)

    def visible_expression(self, user_id: int, entity: str, level: str = READ) -> peewee.ColumnBase:
        """The same filter as a peewee expression over crmtasks.models' model of ``entity``."""
        get_entity(entity)
        check_level(level)
        return filters.expression(self.visibility(user_id), entity, level)
