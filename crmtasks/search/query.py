"""Faceted search over the CRM's records: a page of records, the total, and counts per facet value.

Where the counts come from (``SearchResult.source``):
  - ``"precomputed"``: from the search index (``crmtasks.search.index``),
    for any number of facet filters (values or lists) and range filters.
    The search counts, and picks the page's ids, from this process's
    overlay (``crmtasks.search.overlay``: the generation plus the rows
    changed since it, as of a position), then sends ONE statement that
    reads, in its own snapshot, the current generation, the changes since
    the overlay's position and the page's records. When nothing changed
    since and the generation is the same, that is the answer, exact for
    the statement's snapshot and stamped with its ``statement_timestamp()``.
    Otherwise, in one REPEATABLE READ, READ ONLY snapshot, it reads only
    the changes since the position (since the generation when the overlay
    is of another), reads those records live, advances the overlay and
    counts the generation's rows minus the changed ones plus their live
    rows (``crmtasks.search.segments``). Either way the counts and total
    are exact for the search's own snapshot, stamped ``as_of``, like a
    live count.
    Text ``q`` (crmtasks.search.text_filter) and ``user_id``
    (crmtasks.search.visibility_index) are position filters over the same
    segments, exact as ILIKE and ``sharing.visible`` are.
  - ``"live"``: nothing published yet, a table truncated since the
    generation, ``allow_precomputed=False``, or text on a server whose
    ``lower()`` is not code point by code point (crmtasks.search.text_case):
    counted by PostgreSQL in one GROUP BY GROUPING SETS statement in the same
    kind of snapshot.
Either way the counts are exact as of ``as_of``, and the page of ``records``
(an index range, ``LIMIT``/``OFFSET``) is read live in the same snapshot, so
page and counts agree. Inside a transaction the caller has open, its
statements are the search's: exact for one snapshot when that transaction is
REPEATABLE READ (under READ COMMITTED each statement has its own).

With ``user_id``, the search keeps only the records that user may read
(``crmtasks.sharing.visible``, read in the search's own snapshot) and
counts only those.

A process loads a generation the first time a search sees it (one per
entity held in memory, ``crmtasks.search.index_cache``). Every statement
runs under ``CRMTASKS_SEARCH_TIMEOUT_MS``; none takes a lock that blocks
writers. Bad input raises ValueError before any SQL is sent (see
``crmtasks.search.request``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import psycopg2
import psycopg2.extensions
from psycopg2 import sql
from pyroaring import BitMap

from crmtasks import sharing
from crmtasks.pg import db, transaction
from crmtasks.search import change_log, statement_text
from crmtasks.search import sql as facet_sql
from crmtasks.search.change_log import STATE_COLUMNS, LogState
from crmtasks.search.facets import Entity
from crmtasks.search.index import EntityIndex
from crmtasks.search.index_cache import CACHE
from crmtasks.search.index_read import read_rows_of_ids
from crmtasks.search.kinds import ROW_ALIAS
from crmtasks.search.overlay import OVERLAYS, Overflow, Overlay, too_many
from crmtasks.search.request import SearchRequest, build_request
from crmtasks.search.segments import (
    Matched,
    PositionFilter,
    Segment,
    count_matched,
    evaluate,
    matching_ids,
)
from crmtasks.search.text_filter import text_filter
from crmtasks.search.visibility_index import (
    EPOCH_SEEN,
    reads_accounts,
    visibility_filter,
)
from crmtasks.settings import get_settings
from crmtasks.sharing import filters as sharing_filters

# A text or per-user search ordered by something else than the id and matching at most this many
# rows reads its page by id (see _narrowed).
PAGE_BY_IDS_UP_TO = 2_000
PRECOMPUTED = "precomputed"
LIVE = "live"


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """One page of a faceted search.

    Parameters:
      entity(str): What was searched.
      records(list): The page's records, one dict per record (column -> value), read live.
      total(int): Records matching the search (as of ``as_of``).
      page(int): 1-based page number.
      per_page(int): Records per page asked for.
      facets(dict): ``{field: {value: count}}`` for every facet field of the entity, counts of the
        matching records (as of ``as_of``), largest first; the value None counts records with no value.
      as_of(datetime): When the snapshot the counts are exact for was taken.
      source(str): ``"precomputed"`` (published counts) or ``"live"`` (counted by this search).
    """

    entity: str
    records: list[dict[str, Any]]
    total: int
    page: int
    per_page: int
    facets: dict[str, dict[Any, int]]
    as_of: datetime.datetime
    source: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def faceted_search(entity: str, filters: Mapping[str, Any] | None = None, q: str | None = None, page: int = 1,
                   per_page: int = 25, order_by: str | None = None, *, allow_precomputed: bool = True,
                   user_id: int | None = None, connection: psycopg2.extensions.connection | None = None) -> SearchResult:
    """Search ``entity``'s records; see the module docstring for where counts come from.

    Parameters:
      entity(str): ``leads``, ``deals``, ``accounts`` or ``contacts``.
      filters(dict): field -> value. A facet field takes a value or a list of up to 100 values (any of
        them; None means "no value"). A range field (created_at, updated_at; deals also close_date, amount)
        takes a dict with any of ``gte``, ``gt``, ``lte``, ``lt``.
      q(str): Case-insensitive text found anywhere in the entity's text columns (leads: name, company,
        email), 3 to 200 characters.
      page(int), per_page(int): Which page, 1-100 records each, up to record 10,000.
      order_by(str): A sortable column, '-' prefix for descending; default ``-id`` (newest first).
      allow_precomputed(bool): False counts live even when published counts could answer.
      user_id(int|None): Search as this user: only records they may read, and counts of only those.
      connection(connection|None): A psycopg2 connection of the caller's to run on (inside its open
        transaction, if any); default: a pooled connection, borrowed for this call only.

    Raises ValueError (before touching the database) for an unknown entity or field, a value of the
    wrong type, an oversized list, or a name that is not in the registry.
    """
    request = build_request(entity, filters, q, page, per_page, order_by)
    if user_id is not None and (isinstance(user_id, bool) or not isinstance(user_id, int) or user_id < 1):
        raise ValueError(f"user_id must be a positive whole number (got {user_id!r})")
    settings = get_settings()
    with db.using_connection(connection) as conn, _session(conn) as (cur, own_transaction):
        answer = None
        if allow_precomputed:
            answer = _one_statement_answer(cur, request, settings.search_timeout_ms if own_transaction else None,
                                           user_id)
        if answer is None:
            where = facet_sql.where_clause(request)
            with _snapshot(cur, settings.search_timeout_ms, own_transaction) as as_of:
                if allow_precomputed:
                    answer = _filtered_index_answer(cur, request, where, user_id, own_transaction)
                if answer is None:
                    answer = _live_answer(cur, request, where, user_id)
            answer = (*answer, as_of)
    source, facets, total, records, as_of = answer
    return SearchResult(entity=request.entity.name, records=records, total=total, page=request.page,
                        per_page=request.per_page, facets=facets, as_of=as_of, source=source)


def _text_filters(cur, request: SearchRequest) -> list[PositionFilter] | None:
    """Text ``q`` as a position filter (none without ``q``); None when the index cannot answer it."""
    if request.q is None:
        return []
    text = text_filter(cur, request.entity, request.q)  # its statements read no table: any snapshot will do
    if text is None:
        return None  # the server's lower() is not code point by code point: ILIKE, live
    return [_once_per_index(text)]


def _one_statement_answer(cur, request: SearchRequest, timeout_ms: int | None, user_id: int | None):
    """``(source, facets, total, records, as_of)`` in one statement, or None when it cannot tell.

    The counts and the page's ids come from this process's overlay (``crmtasks.search.overlay``).
    One statement, in one snapshot, reads the current generation, the changes since the overlay's
    position, the sharing epoch's token and the page's rows. When the generation is the overlay's and
    nothing changed since, the overlay's rows are exactly the statement's rows: the counts and the page
    are exact for it, stamped with its ``statement_timestamp()``. Otherwise (None) the caller reads
    in a snapshot of its own and advances the overlay.

    As a user: the user's visibility compiled at the epoch token this process last read, from the
    sharing checker's memory (``visibility_index.EPOCH_SEEN``), filters the positions, and the answer
    is used only when the statement read that same token (the rules of its snapshot). The page is then
    read by the ids the index kept, which are exactly the rows the user may read. Not for a filter that
    needs the hierarchy's accounts (deals, contacts) nor for a page read by its SQL: None.
    """
    held = OVERLAYS.get(request.entity.name)
    if not isinstance(held, Overlay):
        return None
    extra = _text_filters(cur, request)
    if extra is None:
        return None
    visibility = None
    if user_id is not None:
        visibility = EPOCH_SEEN.remembered(user_id)
        if visibility is None or reads_accounts(visibility, request.entity.name):
            return None
        visible = visibility_filter(None, visibility, request.entity.name)
        if visible is not None:
            extra.append(_once_per_index(visible))
    matched = evaluate(held.segments, request, extra)
    page_request, ids = _page_ids(matched, request)
    if visibility is not None and ids is None:
        return None  # the page by its SQL would need the visibility's condition: the snapshot path has it
    statement_text.execute(cur, page_request, held.key, held.position, ids, timeout_ms)
    rows = cur.fetchall()
    if not rows:
        return None
    state = LogState.from_row(rows[0])
    EPOCH_SEEN.note(state.sharing_token)
    if not state.since_position or state.changed:
        return None
    if visibility is not None and state.sharing_token != visibility.epoch.token:
        return None  # the rules changed since this process last looked
    facets, total = count_matched(matched, request)
    columns = [column.name for column in cur.description[STATE_COLUMNS:]]
    records = [dict(zip(columns, row[STATE_COLUMNS:])) for row in rows if row[STATE_COLUMNS] is not None]
    return PRECOMPUTED, facets, total, records, state.as_of


def _filtered_index_answer(cur, request: SearchRequest, where: sql.Composable, user_id: int | None,
                           own_transaction: bool):
    """The index's answer with text ``q`` and the user's visibility as position filters; None: answer live.

    The visibility is compiled once, in the search's snapshot: its bitmaps keep the counted rows,
    its SQL condition (crmtasks.sharing.filters) the page's.
    """
    extra = _text_filters(cur, request)
    if extra is None:
        return None
    if user_id is not None:
        visibility = sharing.visibility(user_id, cursor=cur)
        visible = visibility_filter(cur, visibility, request.entity.name)
        if visible is not None:
            extra.append(_once_per_index(visible))
        where = sql.SQL("({}) AND ({})").format(
            where, sharing_filters.condition(visibility, request.entity.name, ROW_ALIAS))
    return _index_answer(cur, request, where, extra, own_transaction)


def _index_answer(cur, request: SearchRequest, where: sql.Composable,
                  extra: Sequence[PositionFilter], own_transaction: bool):
    """``(source, facets, total, records)`` from the index and the changes since it; None when it cannot answer.

    Runs in the caller's snapshot: the generation, the changed rows and the page are all read in it.
    Reads the changes since this process's overlay when the snapshot contains its position (else
    since the generation), and offers the overlay so made for later searches when the snapshot is
    one this search opened (a caller's transaction may hold writes of its own, not yet committed).
    """
    segments = _segments(cur, request.entity, own_transaction)
    if segments is None:
        return None
    matched = evaluate(segments, request, extra)
    facets, total = count_matched(matched, request)
    cur.execute(facet_sql.page_query(*_narrowed(where, matched, request)))
    return PRECOMPUTED, facets, total, _records(cur)


def _segments(cur, entity: Entity, own_transaction: bool) -> Sequence[Segment] | None:
    """The cursor's snapshot's rows as segments of the index, the overlay advanced to it; None: answer live."""
    held = OVERLAYS.get(entity.name)
    overlay = held if isinstance(held, Overlay) else None
    cur.execute(change_log.state_sql(entity, overlay and overlay.key, overlay and overlay.position))
    row = cur.fetchone()
    if row is None:
        return None  # nothing published yet
    state = LogState.from_row(row)
    EPOCH_SEEN.note(state.sharing_token)
    if overlay is not None and not state.since_position:  # another generation, or an older snapshot
        cur.execute(change_log.state_sql(entity))
        state = LogState.from_row(cur.fetchone())
    if None in state.changed:
        return None  # a table was truncated since the generation: live until the next build
    changed = np.array(sorted(state.changed), dtype=np.int64)
    rows = read_rows_of_ids(cur, entity, changed) if len(changed) else None
    if state.since_position:
        made = overlay.advanced(state.snapshot, changed, rows)
    else:
        loaded = CACHE.get(cur, entity.name, state.key)
        made = Overlay.of_generation(loaded, state.snapshot, changed, rows)
    if own_transaction:
        OVERLAYS.offer(entity.name, held, Overflow(made.key) if too_many(made.changed) else made)
    return made.segments


def _page_ids(matched: Sequence[Matched], request: SearchRequest) -> tuple[SearchRequest, list[int] | None]:
    """The page's request and the ids it is narrowed to (None: not narrowed), from the index.

    Ordered by id (the default), the page's ids are read from the index: the matching ids at
    ``offset .. offset + per_page`` in id order, then ``id = ANY(those)`` with offset 0. Ordered
    otherwise and matching at most ``PAGE_BY_IDS_UP_TO`` rows, ``id = ANY(<every matching id>)``;
    beyond, the page is read by its SQL alone (an index range in page order).
    Either way the page's own conditions (ILIKE, the visibility) then run on those rows only, found
    by primary key, whatever plan they would get alone (a rare ``q`` or facet value can walk the id
    index end to end), and the ids are exactly the matching rows of the snapshot the segments are
    of, so the page is the same.
    """
    column, descending = request.order
    by_id = column == "id"
    if not by_id and sum(len(m) for m in matched) > PAGE_BY_IDS_UP_TO:
        return request, None
    wanted = request.offset + request.per_page if by_id else None
    matching = matching_ids(matched, wanted, descending)
    if by_id:
        matching = matching[::-1] if descending else matching
        matching = np.sort(matching[request.offset:request.offset + request.per_page])
        request = dataclasses.replace(request, page=1)
    return request, matching.tolist()


def _narrowed(where: sql.Composable, matched: Sequence[Matched],
              request: SearchRequest) -> tuple[SearchRequest, sql.Composable]:
    """The page's ``(request, where)``, narrowed to the ids the index says match (see ``_page_ids``)."""
    request, ids = _page_ids(matched, request)
    if ids is None:
        return request, where
    return request, sql.SQL("({}) AND {} = ANY({}::bigint[])").format(
        where, sql.Identifier(ROW_ALIAS, "id"), sql.Literal(ids))


def _once_per_index(position_filter: PositionFilter) -> PositionFilter:
    """``position_filter`` computed once per segment's index in this search (the counts, then the page)."""
    memo: dict[int, tuple[EntityIndex, BitMap]] = {}

    def positions(index: EntityIndex) -> BitMap:
        if id(index) not in memo:
            memo[id(index)] = (index, position_filter(index))  # the index kept: its id is not reused meanwhile
        return memo[id(index)][1]

    return positions


def _live_answer(cur, request: SearchRequest, where: sql.Composable, user_id: int | None = None):
    """``(source, facets, total, records)`` counted now, in the caller's snapshot, so counts and page agree.

    With ``user_id``, the rows are also kept to those the user may read, by rules read in the same snapshot.
    """
    entity = request.entity
    if user_id is not None:
        where = sql.SQL("({}) AND ({})").format(where, sharing.visible(user_id, entity.name, ROW_ALIAS, cursor=cur))
    if request.q is None:
        # Two index passes: the counts (index-only where a filter's covering index serves) and
        # the page (an index range in page order).
        cur.execute(facet_sql.grouped_counts(entity, where, facet_sql.single_sets(entity)))
        facets, _ = _live_facets(entity, cur.fetchall())
        cur.execute(facet_sql.page_query(request, where))
        records = _records(cur)
    else:
        # Text: finding the rows (trigram index, then ILIKE on each candidate) is the expensive
        # part, so the counts and the page's ids come from one pass, then the page by id.
        cur.execute(facet_sql.counts_and_page_ids(request, where))
        facets, page_ids = _live_facets(entity, cur.fetchall())
        cur.execute(facet_sql.records_by_id(entity, page_ids))
        by_id = {record["id"]: record for record in _records(cur)}
        records = [by_id[row_id] for row_id in page_ids if row_id in by_id]
    return LIVE, facets, sum(facets[entity.facets[0].name].values()), records


def _records(cur) -> list[dict[str, Any]]:
    columns = [column.name for column in cur.description]
    return [dict(zip(columns, row)) for row in cur.fetchall()]


@contextlib.contextmanager
def _session(conn: psycopg2.extensions.connection) -> Iterator[tuple[Any, bool]]:
    """``(cursor, own_transaction)``: own_transaction is False inside a transaction the caller has open,
    which is then used as it is (no isolation change, no timeout: both would outlive this search)."""
    own_transaction = conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    was_autocommit = conn.autocommit
    if own_transaction:
        conn.autocommit = True  # statements below manage their own (implicit or explicit) transactions
    try:
        with conn.cursor() as cur:
            yield cur, own_transaction
    finally:
        if own_transaction and conn.closed == 0:
            conn.autocommit = was_autocommit


@contextlib.contextmanager
def _snapshot(cur, timeout_ms: int, own_transaction: bool) -> Iterator[datetime.datetime]:
    """Run the block inside one REPEATABLE READ READ ONLY transaction; yields when its snapshot was taken."""
    if not own_transaction:
        cur.execute("SELECT statement_timestamp()")
        yield cur.fetchone()[0]
        return
    # One round trip opens the transaction, bounds it and takes the snapshot every statement of the block reads.
    with transaction(cur.connection, repeatable_read=True, read_only=True,
                     local={"statement_timeout": str(int(timeout_ms))}, stamped=True) as opening:
        yield opening.fetchone()[0]


def _live_facets(entity: Entity, rows: list[tuple]) -> tuple[dict[str, dict[Any, int]], list[int]]:
    """Facets from the rows of ``grouped_counts`` (single sets) or ``counts_and_page_ids``, and the page ids."""
    names = entity.facet_names
    field_of_mask = {facet_sql.grouping_mask(len(names), (i,)): i for i in range(len(names))}
    facets: dict[str, dict[Any, int]] = {name: {} for name in names}
    decoders = [facet.kind.decode for facet in entity.facets]
    page_ids: list[int] = []
    keyed = []
    for row in rows:
        if row[0] is None:
            page_ids = row[-1]
            continue
        i = field_of_mask[row[0]]
        keyed.append((i, row[1 + i], row[1 + len(names)]))
    # largest count first, then by key (no value last), as published counts are ordered
    for i, key, n in sorted(keyed, key=lambda item: (-item[2], item[1] is None, item[1] or "")):
        facets[names[i]][None if key is None else decoders[i](key)] = n
    return facets, page_ids
