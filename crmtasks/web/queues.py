"""Faceted search over the CRM's records: a page of records, the total, and counts per facet value.

Where the counts come from (``SearchResult.source``):
  - ``"precomputed"``: from the search index (``crmtasks.search.index``),
    for any number of facet filters (values or lists) and range filters.
    In one REPEATABLE READ, READ ONLY snapshot the search reads which
    generation is current and which records changed since it (the change
    log, one statement), reads those records live (usually few), and counts
    the generation's rows minus the changed ones plus their live rows
    (``crmtasks.search.segments``). So the counts and total are exact for
    the search's own snapshot, stamped ``as_of``, like a live count.
  - ``"live"``: text ``q``, ``user_id``, nothing published yet, or a table
    truncated since the generation: counted by PostgreSQL in one GROUP BY
    GROUPING SETS statement in the same kind of snapshot.
Either way the counts are exact as of ``as_of``, and the page of ``records``
(an index range, ``LIMIT``/``OFFSET``) is read live in the same snapshot, so
page and counts agree.

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

from crmtasks import sharing
from crmtasks.pg import db, transaction
from crmtasks.search import sql as facet_sql
from crmtasks.search.facets import Entity
from crmtasks.search.index_cache import CACHE, GenerationKey, changes_query
from crmtasks.search.index_read import read_rows_of_ids
from crmtasks.search.kinds import ROW_ALIAS
from crmtasks.search.request import SearchRequest, build_request
from crmtasks.search.segments import PositionFilter, count
from crmtasks.settings import get_settings

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
    where = facet_sql.where_clause(request)
    with db.using_connection(connection) as conn, _session(conn) as (cur, own_transaction), \
            _snapshot(cur, settings.search_timeout_ms, own_transaction) as as_of:
        answer = None
        if allow_precomputed and user_id is None and request.q is None:
            answer = _index_answer(cur, request, where)
        if answer is None:
            answer = _live_answer(cur, request, where, user_id)
    source, facets, total, records = answer
    return SearchResult(entity=request.entity.name, records=records, total=total, page=request.page,
                        per_page=request.per_page, facets=facets, as_of=as_of, source=source)


def _index_answer(cur, request: SearchRequest, where: sql.Composable,
                  extra: Sequence[PositionFilter] = ()):
    """``(source, facets, total, records)`` from the index and the changes since it; None when it cannot answer.

    Runs in the caller's snapshot: the generation, the changed rows and the page are all read in it.
    """
    entity = request.entity
    cur.execute(changes_query(entity))
    row = cur.fetchone()
    if row is None:
        return None  # nothing published yet
    *key, changed = row
    if None in changed:
        return None  # a table was truncated since the generation: live until the next build
    loaded = CACHE.get(cur, entity.name, GenerationKey(*key))
    changed_ids = np.array(sorted(changed), dtype=np.int64)
    live = read_rows_of_ids(cur, entity, changed_ids) if len(changed_ids) else None
    facets, total = count(loaded.segments(changed_ids, live), request, extra)
    cur.execute(facet_sql.page_query(request, where))
    return PRECOMPUTED, facets, total, _records(cur)


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
