"""Faceted search over the CRM's records: a page of records, the total, and counts per facet value.

Where the counts come from (``SearchResult.source``):
  - ``"precomputed"``: a search with no filter, or a filter on one facet field
    (one value or a list), and no range and no text, is answered from the
    counts ``analytics.precompute_facets`` published last (one-dimensional and
    pairwise counts). ``facets`` and ``total`` are then exact as of that run's
    snapshot, ``as_of`` (at most one schedule period old, 5 minutes by
    default): ``total`` is the sum of the filtered field's counts, so no
    table is counted.
  - ``"live"``: anything else (two or more facet filters, ranges, text), or no
    published counts yet, is counted now by PostgreSQL in one GROUP BY
    GROUPING SETS statement; ``as_of`` is the moment of this search's snapshot.
Either way the counts are exact as of ``as_of``.

With ``user_id``, the search keeps only the records that user may read
(``crmtasks.sharing.visible``, read in the search's own snapshot) and
counts only those: always live, since the published counts are everyone's
and would leak how many records the user cannot see. The page of ``records`` is
always read live (an index range, ``LIMIT``/``OFFSET``), so right after
records change, a precomputed answer's page may show records its counts do
not include yet, until the next run.

A precomputed answer takes two statements (two round trips): the published
counts, read through ``facet_current`` in one statement so they come from
one whole generation, then the page. A live answer reads counts and page in
one REPEATABLE READ, READ ONLY transaction, so they agree with each other.
Every statement runs under ``CRMTASKS_SEARCH_TIMEOUT_MS``; none takes a lock
that blocks writers. Bad input raises ValueError before any SQL is sent (see
``crmtasks.search.request``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from crmtasks import sharing
from crmtasks.pg import db, transaction
from crmtasks.search import sql as facet_sql
from crmtasks.search.facets import Entity
from crmtasks.search.kinds import ROW_ALIAS, TextColumn, column_in
from crmtasks.search.request import SearchRequest, build_request
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
    with db.using_connection(connection) as conn, _session(conn) as (cur, own_transaction):
        answer = None
        if allow_precomputed and user_id is None and request.answerable_from_precomputed:
            answer = _published_answer(cur, request, where, settings.search_timeout_ms, own_transaction)
        if answer is None:
            answer = _live_answer(cur, request, where, settings.search_timeout_ms, own_transaction, user_id)
    as_of, source, facets, total, records = answer
    return SearchResult(entity=request.entity.name, records=records, total=total, page=request.page,
                        per_page=request.per_page, facets=facets, as_of=as_of, source=source)


def _published_answer(cur, request: SearchRequest, where: sql.Composable, timeout_ms: int, own_transaction: bool):
    """``(as_of, source, facets, total, records)`` from the published counts; None when nothing is published.

    Two round trips, each one statement (so one snapshot) under the search timeout: the counts, then the page.
    """
    cur.execute(_bounded(_published_counts_query(request), timeout_ms, own_transaction))
    published = _published_facets(request.entity, cur.fetchall())
    if published is None:
        return None
    as_of, facets = published
    # total: the filtered field's counts (or any field's, unfiltered) add up to the matching records
    counted_field = request.facet_filters[0].facet.name if request.facet_filters else request.entity.facets[0].name
    cur.execute(_bounded(facet_sql.page_query(request, where), timeout_ms, own_transaction))
    return as_of, PRECOMPUTED, facets, sum(facets[counted_field].values()), _records(cur)


def _live_answer(cur, request: SearchRequest, where: sql.Composable, timeout_ms: int, own_transaction: bool,
                 user_id: int | None = None):
    """``(as_of, source, facets, total, records)`` counted now; counts and page from one snapshot, so they agree.

    With ``user_id``, the rows are also kept to those the user may read, by rules read in the same snapshot.
    """
    entity = request.entity
    with _snapshot(cur, timeout_ms, own_transaction) as snapshot_at:
        if user_id is not None:
            where = sql.SQL("({}) AND ({})").format(where, sharing.visible(user_id, entity.name, ROW_ALIAS,
                                                                            cursor=cur))
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
    return snapshot_at, LIVE, facets, sum(facets[entity.facets[0].name].values()), records


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


def _bounded(statement: sql.Composable, timeout_ms: int, own_transaction: bool) -> sql.Composable:
    """``statement`` with the search timeout, in one round trip.

    Several statements sent at once run as one implicit transaction, so the
    local setting ends with it and never leaks into the pooled connection.
    """
    if not own_transaction:
        return statement
    return sql.SQL("SELECT set_config('statement_timeout', {}, true); {}").format(
        sql.Literal(str(int(timeout_ms))), statement)


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


def _published_counts_query(request: SearchRequest) -> sql.Composable:
    """The current generation's counts for a search with no filter or one facet filter.

    Rows: first ``(as_of, NULL, NULL, NULL)`` (as_of NULL when nothing is
    published), then ``(NULL, field, value, count)`` per bucket, largest
    count first. One statement, so one snapshot: it reads one whole
    generation, through ``facet_current``, from one index range of
    ``facet_counts``.
    """
    if request.facet_filters:
        facet_filter = request.facet_filters[0]
        given_field = sql.Literal(facet_filter.facet.name)
        given_values = column_in(sql.Identifier("c", "given_value"), facet_filter.keys,
                                 null_included=facet_filter.null_included, cast="text[]")
        several = len(facet_filter.keys) + facet_filter.null_included > 1
    else:
        given_field, given_values, several = sql.Literal(""), sql.SQL("TRUE"), False
    matching = sql.SQL(
        "c.generation_id = cur.generation_id AND c.entity = {entity} AND c.given_field = {given_field} AND {given_values}"
    ).format(entity=sql.Literal(request.entity.name), given_field=given_field, given_values=given_values)
    if several:  # a list: add up the counts given each of its values
        counts = sql.SQL("SELECT c.field, c.value, sum(c.count)::bigint AS count FROM facet_counts AS c "
                         "WHERE {} GROUP BY c.field, c.value").format(matching)
    else:
        counts = sql.SQL("SELECT c.field, c.value, c.count FROM facet_counts AS c WHERE {}").format(matching)
    # as_of once (not on every row: parsing timestamps costs), then the buckets. LATERAL: find the
    # generation first, then read its one index range, whatever the table statistics say.
    return sql.SQL(
        "(SELECT cur.as_of, NULL::text, NULL::text, NULL::bigint FROM (SELECT) AS one "
        "LEFT JOIN facet_current AS cur ON true) "
        "UNION ALL (SELECT NULL, c.field, c.value, c.count FROM facet_current AS cur, LATERAL ({}) AS c "
        "ORDER BY c.count DESC, c.value)").format(counts)


def _published_facets(entity: Entity, rows: list[tuple]) -> tuple[datetime.datetime, dict[str, dict[Any, int]]] | None:
    """``(as_of, facets)`` from the rows of ``_published_counts_query``; None when nothing is published."""
    as_of = next(row[0] for row in rows if row[1] is None)
    if as_of is None:
        return None
    # A text bucket's key is its value already: skip decoding (most buckets are text).
    decoders = {facet.name: None if isinstance(facet.kind, TextColumn) else facet.kind.decode
                for facet in entity.facets}
    facets: dict[str, dict[Any, int]] = {name: {} for name in decoders}
    for _, field, value, count in rows:
        if field in decoders:  # a field no longer in the registry is ignored until the next run drops it
            decode = decoders[field]
            facets[field][value if value is None or decode is None else decode(value)] = count
    return as_of, facets


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
    for i, key, count in sorted(keyed, key=lambda item: (-item[2], item[1] is None, item[1] or "")):
        facets[names[i]][None if key is None else decoders[i](key)] = count
    return facets, page_ids
