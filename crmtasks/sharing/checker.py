"""Access checks and query filters for one user: exact, or answered from memory kept current by notifications.

``exact`` (the default). The protocol that makes checks never wrong:
1. Read the record's facts and the current epoch in one statement (one snapshot).
2. Take the user's visibility at exactly that epoch: from a cache tier whose
   entry carries that epoch token, else compile it now.
3. A freshly compiled visibility may be newer than the record read in step 1
   (a sharing change committed in between): then read the record again until
   both are of one epoch, so the answer is that of one real state.
Any change to the sharing inputs commits together with its epoch bump, so a
check that starts after the commit sees the new token and cannot use an
entry compiled before it: "revoke, then check at once" is denied, from any
process, warm cache or not. A batch (``can_access_many``) is the same
protocol with one statement reading every record of the batch.

``notify``. A check first looks in this process's memory: the user's
visibility at the newest epoch the listener (crmtasks.sharing.listener) has
heard of, and the records' facts, each kept until a notification says it
changed. When both are there the answer needs no round trip. Otherwise, and
whenever the listener is not listening, the check runs the exact protocol
and remembers what it read (unless a notification came in between, see
LocalRecordCache). A memory answer is the database's as of the last
notification applied: a change counts once its notification arrives (the
bench measures how long that takes), and at once after ``sync()``.
"""

from __future__ import annotations

import collections
import contextlib
import itertools

import peewee
from psycopg2 import sql

from crmtasks.errors import CrmtasksError
from crmtasks.pg import db
from crmtasks.pg.combining import ALONE
from crmtasks.sharing import filters
from crmtasks.sharing.cache import VisibilityCache
from crmtasks.sharing.compile import compile_visibility
from crmtasks.sharing.entities import ACCESS_LEVELS, ENTITIES, READ, check_level, get_entity
from crmtasks.sharing.listener import ListenState, SharingListener
from crmtasks.sharing.records import allowed_in, epoch_of, facts_of, read_epoch, read_rows
from crmtasks.sharing.visibility import Epoch, RecordFacts, Visibility

_BIGINT_MAX = 2**63 - 1
# Rounds of step 3 before giving up; each needs a sharing change committed
# between two statements of this check, so more than one is already rare.
MAX_ROUNDS = 5
# The (entity, level) pairs a check may ask about: one lookup validates both.
_CHECKABLE = frozenset((entity, level) for entity in ENTITIES for level in ACCESS_LEVELS)
# The pool's combiner (crmtasks.pg.combining) of exact single-record checks.
_COMBINED_CHECKS = "sharing checks"
# Most record ids one can_access_many call takes: one statement, one round trip, a bounded array.
MAX_BATCH = 10_000


class SharingInFlux(CrmtasksError):
    """The sharing inputs kept changing during one check; nothing was allowed. Retry."""


def _check_id(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an int, got {type(value).__name__} {value!r}"[:120])  # noqa: TRY004 - the API raises ValueError for every bad argument
    return value


def _in_range(value: int) -> bool:
    return 0 < value <= _BIGINT_MAX


def _check_ids(record_ids) -> list[int]:
    """``record_ids`` as a list of distinct ints, in the order given; ValueError before any SQL otherwise."""
    if isinstance(record_ids, (str, bytes)) or not hasattr(record_ids, "__iter__"):
        raise ValueError(f"record_ids must be a collection of ints, got {type(record_ids).__name__}")
    ids = list(itertools.islice(iter(record_ids), MAX_BATCH + 1))
    if len(ids) > MAX_BATCH:
        raise ValueError(f"at most {MAX_BATCH:,} record ids per call, got more")
    if not all(type(value) is int for value in ids):  # the common case in one pass; bools and others named below
        for value in ids:
            _check_id("every record id", value)
    return list(dict.fromkeys(ids))


class AccessChecker:
    """``can_access``, ``can_access_many`` and ``visible`` over the bound database (crmtasks.pg.db).

    Parameters:
      cache(VisibilityCache|None): Where compiled visibilities are kept; None
        compiles one from the database for every call (the uncached baseline).
      listener(SharingListener|None): In ``notify`` mode, what keeps this
        process's memory current (started on first use); None: ``exact`` mode.

    ``counts``: ``compiles`` (visibilities compiled), ``memory_answers``
    (checks answered without a round trip), ``database_answers`` (checks
    that read PostgreSQL).
    """

    def __init__(self, cache: VisibilityCache | None, listener: SharingListener | None = None) -> None:
        self.cache = cache
        self.listener = listener
        self.counts = collections.Counter()
        # Exact checks are served together only when visibilities are kept in memory (``cache.current``, the
        # warm path): without that tier each would run alone anyway, after a wasted statement.
        self._combined = listener is None and cache is not None and getattr(cache, "local", cache) is not None

    @property
    def consistency(self) -> str:
        return "exact" if self.listener is None else "notify"

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

    def _listening(self) -> ListenState | None:
        """The listener's state when memory may answer (notify mode, listening), else None."""
        listener = self.listener
        if listener is None:
            return None
        listener.start()
        state = listener.state
        return state if state.listening else None

    def _remembered(self, user_id: int, entity: str, level: str, record_ids: list[int]) -> set[int] | None:
        """The answer from memory alone, or None when anything it needs is not there.

        The epoch and the records' facts are taken together under the records' lock: both reflect the same
        batches of notifications, never an epoch bump without the record changes of its transaction.
        """
        records = self.listener.records
        with records.lock:
            state = self.listener.state
            facts = records.get_many(entity, record_ids) if state.listening else None
        if facts is None or self.cache is None:
            return None
        visibility = self.cache.get(user_id, state.epoch)
        if visibility is None:
            return None
        self.counts["memory_answers"] += 1
        return visibility.allowed_ids(entity, level, facts)

    def _consistent(self, cursor, user_id: int, read, rows: list[tuple]) -> tuple[Visibility, list[tuple]]:
        """The visibility at the epoch of ``rows`` (read by ``read()``), reading again until both agree (steps 2, 3)."""
        epoch = epoch_of(rows)
        visibility = self._visibility_at(cursor, user_id, epoch)
        for _ in range(MAX_ROUNDS):
            if visibility.epoch == epoch:
                return visibility, rows
            rows = read()
            epoch = epoch_of(rows)
            if visibility.epoch != epoch:
                visibility = self._visibility_at(cursor, user_id, epoch)
        raise SharingInFlux(f"sharing rules changed {MAX_ROUNDS} times during one check of user {user_id}")

    def _answer(self, user_id: int, entity: str, level: str, record_ids: list[int], connection=None) -> set[int]:
        """The ids of ``record_ids`` (valid, in range, at least one) that ``user_id`` may ``level``.

        Reads on ``connection`` (a psycopg2 connection of the caller's) when given, else on a pooled one
        lent for this call only. Warm (the user's visibility in memory at the epoch read), that is one
        statement and no per-record object.
        """
        state = self._listening() if self.listener is not None else None
        if state is not None:
            found = self._remembered(user_id, entity, level, record_ids)
            if found is not None:
                return found
        # Taken before the read: a notification applied from now on makes put_many drop what is read.
        generation = self.listener.records.generation(entity) if state is not None else None
        cache = self.cache
        with db.lent_connection(connection) as conn, conn.cursor() as cursor:
            rows = read_rows(cursor, entity, record_ids)
            visibility = cache.current(user_id, rows[0][1]) if cache is not None else None
            if visibility is None:
                visibility, rows = self._consistent(cursor, user_id, lambda: read_rows(cursor, entity, record_ids),
                                                    rows)
        self.counts["database_answers"] += 1
        if generation is not None and rows[0][2] is not None:
            self._remember(entity, facts_of(entity, rows), generation, visibility.epoch)
        return allowed_in(entity, rows, visibility.access_test(entity, level))

    def _remember(self, entity: str, facts: dict[int, RecordFacts], generation, read_at: Epoch) -> None:
        """Keep facts read at epoch ``read_at`` only if that is the epoch memory answers at now: facts newer than
        the notifications applied would pair a change with rules it was not committed with."""
        records = self.listener.records
        with records.lock:
            state = self.listener.state
            if state.listening and state.epoch == read_at:
                records.put_many(entity, facts, generation)

    def can_access(self, user_id: int, entity: str, record_id: int, level: str = READ, *,
                   connection=None) -> bool:
        """True when user ``user_id`` may ``level`` (``read``/``edit``) record ``record_id`` of ``entity`` now.

        An unknown user or record, or an inactive user, gets False. ValueError
        for an unknown entity or level, or ids that are not ints. One round
        trip to PostgreSQL on a warm cache in exact mode (on ``connection``, a
        psycopg2 connection of the caller's, or a pooled one borrowed for this
        call); none in notify mode when the user and the record are remembered.
        """
        try:
            known = (entity, level) in _CHECKABLE
        except TypeError:  # an unhashable entity or level: get_entity and check_level say what is wrong
            known = False
        if not known:
            get_entity(entity)
            check_level(level)
        if type(user_id) is not int:  # bool is an int too: _check_id tells them apart
            _check_id("user_id", user_id)
        if type(record_id) is not int:
            _check_id("record_id", record_id)
        if not (0 < user_id <= _BIGINT_MAX and 0 < record_id <= _BIGINT_MAX):
            return False
        if connection is None and self._combined:
            pool = db.pool_to_lend()
            if pool is not None:  # exact, on a lent connection: served together with the checks waiting now
                return pool.combiner(_COMBINED_CHECKS).call(entity, (user_id, entity, level, record_id),
                                                            self._check_alone, self._check_together)
        return bool(self._answer(user_id, entity, level, [record_id], connection))

    def _check_alone(self, request: tuple[int, str, str, int]) -> bool:
        """One ``(user, entity, level, record)`` check, on its own (exact protocol)."""
        user_id, entity, level, record_id = request
        return bool(self._answer(user_id, entity, level, [record_id]))

    def _check_together(self, entity: str, requests: list[tuple[int, str, str, int]]) -> list:
        """Checks of ``entity`` by several callers from one statement (one snapshot), each decided as alone.

        The records and the epoch are read together once; a check whose user's visibility is in memory at
        that epoch is decided from the rows (the warm path of ``_answer``, the same answer); the others are
        left ``ALONE`` (each runs the whole exact protocol in its own caller's thread).
        """
        record_ids = list(dict.fromkeys(request[3] for request in requests))
        with db.lent_connection() as conn, conn.cursor() as cursor:
            rows = read_rows(cursor, entity, record_ids)
        token = rows[0][1]
        by_id = {row[2]: row for row in rows if row[2] is not None}
        current = self.cache.current
        answers = []
        for user_id, _, level, record_id in requests:
            visibility = current(user_id, token)
            if visibility is None:
                answers.append(ALONE)
                continue
            row = by_id.get(record_id)
            answers.append(row is not None and bool(allowed_in(entity, [row], visibility.access_test(entity, level))))
        self.counts["database_answers"] += sum(answer is not ALONE for answer in answers)
        return answers

    def can_access_many(self, user_id: int, entity: str, record_ids, level: str = READ, *,
                        connection=None) -> set[int]:
        """The ids among ``record_ids`` (up to MAX_BATCH ints) that ``user_id`` may ``level`` now.

        The same answer as ``can_access`` for each id, from one snapshot: one
        round trip for the whole batch (none in notify mode when everything
        is remembered). ValueError before any SQL for an unknown entity or
        level, an id that is not an int, or more than MAX_BATCH ids.
        """
        get_entity(entity)
        check_level(level)
        _check_id("user_id", user_id)
        wanted = _check_ids(record_ids)
        if wanted and not (0 < min(wanted) and max(wanted) <= _BIGINT_MAX):
            wanted = [record_id for record_id in wanted if _in_range(record_id)]
        if not (_in_range(user_id) and wanted):
            return set()
        return self._answer(user_id, entity, level, wanted, connection)

    def visibility(self, user_id: int, *, cursor=None) -> Visibility:
        """The current compiled visibility of ``user_id``.

        With ``cursor``, the epoch (and, on a miss, the compile) is read
        through it: inside the caller's REPEATABLE READ transaction, the
        visibility is then exactly that of the caller's snapshot. Without it,
        in notify mode, a remembered visibility at the newest epoch heard of
        is used with no round trip.
        """
        _check_id("user_id", user_id)
        if not _in_range(user_id):
            user_id = 0  # no such user: compiles to "nothing", like any unknown id
        state = self._listening() if cursor is None else None
        if state is not None and self.cache is not None:
            entry = self.cache.get(user_id, state.epoch)
            if entry is not None:
                return entry
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

    def sync(self, timeout_s: float = 5.0) -> bool:
        """Return once this process has applied every sharing change committed before the call.

        Exact mode: at once (every check reads the database). Notify mode:
        see SharingListener.sync (True: memory is current; False: not
        listening, so checks are exact).
        """
        return True if self.listener is None else self.listener.sync(timeout_s)

    def close(self) -> None:
        """Stop the listener (notify mode); later checks are exact. Idempotent."""
        if self.listener is not None:
            self.listener.stop()
