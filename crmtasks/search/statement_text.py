"""The text of a search's one statement, from pieces kept per process: composing it costs more than counting.

When the page is read by ids (ordered by id, the default, or matching few rows), the statement does not
depend on the filters at all: the ids are exactly the matching rows of the statement's snapshot when
its answer is used (``crmtasks.search.query``), so it is ``id = ANY(ids)`` in page order. That statement
is prepared once per connection and order (``crmtasks.pg.prepared``): planning it cost about three
times as much as running it (0.26-0.33 ms against 0.09-0.14 ms at 300k leads).

Composing the statement with ``psycopg2.sql`` (the filters' conditions, the
page, the change-log read) takes a few hundred microseconds of Python per
search, more than the counts. A page read by its SQL (ordered by another
column than the id, over many rows) depends only on the request, the
overlay's generation and position, and the timeout: its text is composed
once per such combination and kept in a bounded table (oldest dropped first).
"""

from __future__ import annotations

import collections
import threading

from psycopg2 import sql

from crmtasks.pg.prepared import PreparedStatement
from crmtasks.search import change_log
from crmtasks.search import sql as facet_sql
from crmtasks.search.facets import Entity
from crmtasks.search.index_cache import GenerationKey
from crmtasks.search.kinds import ROW_ALIAS
from crmtasks.search.request import SearchRequest

# Texts kept per process (a few KB each).
KEPT = 512


def signature(request: SearchRequest) -> tuple:
    """What the statement's text depends on in a request (the checked filters, text, page and order)."""
    return (request.entity.name,
            tuple((f.facet.name, f.keys, f.null_included) for f in request.facet_filters),
            tuple((r.column, r.bounds) for r in request.range_filters),
            request.q, request.page, request.per_page, request.order)


class StatementTexts:
    """Bounded table of statement texts (a page read by its SQL); thread-safe."""

    def __init__(self, size: int = KEPT) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._texts: collections.OrderedDict[tuple, str] = collections.OrderedDict()

    def text(self, cur, request: SearchRequest, key: GenerationKey, position: str, timeout_ms: int | None) -> str:
        """The statement: the change log since ``position`` and the page, filters and all."""
        cache_key = (signature(request), key, position, timeout_ms, cur.connection.encoding)
        text = self._texts.get(cache_key)
        if text is None:
            text = self._compose(cur, request, key, position, timeout_ms)
            with self._lock:
                self._texts[cache_key] = text
                while len(self._texts) > self.size:
                    self._texts.popitem(last=False)
        return text

    @staticmethod
    def _compose(cur, request: SearchRequest, key: GenerationKey, position: str, timeout_ms: int | None) -> str:
        # MATERIALIZED: the state row is computed once, not once per page row
        statement = sql.SQL("WITH m AS MATERIALIZED ({state}) SELECT * FROM m LEFT JOIN LATERAL ({page}) AS p "
                            "ON true ORDER BY {order}").format(
            state=change_log.state_sql(request.entity, key, position),
            page=facet_sql.page_query(request, facet_sql.where_clause(request)),
            order=facet_sql.order_terms(request, ("p",)))
        if timeout_ms is not None:  # one simple query: SET LOCAL holds for this implicit transaction only
            statement = sql.SQL("SET LOCAL statement_timeout = {}; {}").format(
                sql.Literal(str(int(timeout_ms))), statement)
        return statement.as_string(cur)

    def clear(self) -> None:
        with self._lock:
            self._texts.clear()


TEXTS = StatementTexts()

_by_ids: dict[tuple[str, str, bool], PreparedStatement] = {}
_by_ids_lock = threading.Lock()


def _page_by_ids(entity: Entity, order: tuple[str, bool]) -> PreparedStatement:
    """The state row and the page of the rows with ids ``$4`` in ``order``, ``LIMIT $5 OFFSET $6``."""
    column, descending = order

    def build(params):
        generation, as_of, position, ids, limit, offset = params
        request = SearchRequest(entity, (), (), None, 1, 1, order)  # only its order is used below
        page = sql.SQL("SELECT {columns} FROM {source} WHERE {row_id} = ANY({ids}) ORDER BY {order} "
                       "LIMIT {limit} OFFSET {offset}").format(
            columns=entity.record_columns_sql(), source=entity.from_sql(), row_id=sql.Identifier(ROW_ALIAS, "id"),
            ids=ids, order=facet_sql.order_terms(request, (ROW_ALIAS,)), limit=limit, offset=offset)
        return sql.SQL("WITH m AS MATERIALIZED ({state}) SELECT * FROM m LEFT JOIN LATERAL ({page}) AS p "
                       "ON true ORDER BY {order}").format(
            state=change_log.state_sql_with(entity, generation, as_of, position), page=page,
            order=facet_sql.order_terms(request, ("p",)))

    key = (entity.name, column, descending)
    statement = _by_ids.get(key)
    if statement is None:
        with _by_ids_lock:
            statement = _by_ids.setdefault(key, PreparedStatement(
                f"crmtasks_search_{entity.name}_{column}_{'desc' if descending else 'asc'}",
                ("bigint", "timestamptz", "text", "bigint[]", "bigint", "bigint"), build))
    return statement


def execute(cur, request: SearchRequest, key: GenerationKey, position: str, ids: list[int] | None,
            timeout_ms: int | None) -> None:
    """Send the search's one statement on ``cur`` (see the module docstring); fetch its rows as usual.

    ``ids``: the page's ids (None: the page is read by its SQL, filters and all).
    """
    if ids is None:
        cur.execute(TEXTS.text(cur, request, key, position, timeout_ms))
        return
    prefix = f"SET LOCAL statement_timeout = '{int(timeout_ms)}'; " if timeout_ms is not None else ""
    _page_by_ids(request.entity, request.order).execute(
        cur, (key.generation, key.as_of, position, ids, request.per_page, request.offset), prefix)
