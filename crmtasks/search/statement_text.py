"""The text of a search's one statement, from pieces kept per process: composing it costs more than counting.

Composing the statement with ``psycopg2.sql`` (the filters' conditions, the
page, the change-log read) takes a few hundred microseconds of Python per
search, more than the counts. Its text depends only on the request (not its
page when the page is read by ids), the overlay's generation and position,
and the timeout; the page's ids are spliced in last. So the text is composed
once per such combination and kept in a bounded table (oldest dropped
first); a search then only joins strings.
"""

from __future__ import annotations

import collections
import threading

from psycopg2 import sql

from crmtasks.search import change_log
from crmtasks.search import sql as facet_sql
from crmtasks.search.index_cache import GenerationKey
from crmtasks.search.kinds import ROW_ALIAS
from crmtasks.search.request import SearchRequest

# Texts kept per process (a few KB each).
KEPT = 512
_IDS = "/*page ids*/"


def signature(request: SearchRequest) -> tuple:
    """What the statement's text depends on in a request (the checked filters, text, page and order)."""
    return (request.entity.name,
            tuple((f.facet.name, f.keys, f.null_included) for f in request.facet_filters),
            tuple((r.column, r.bounds) for r in request.range_filters),
            request.q, request.page, request.per_page, request.order)


class StatementTexts:
    """Bounded table of statement texts, split where the page's ids go; thread-safe."""

    def __init__(self, size: int = KEPT) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._texts: collections.OrderedDict[tuple, tuple[str, str | None]] = collections.OrderedDict()

    def text(self, cur, request: SearchRequest, key: GenerationKey, position: str, ids: list[int] | None,
             timeout_ms: int | None) -> str:
        """The statement: the change log since ``position`` and the page (``id = ANY(ids)`` unless None)."""
        cache_key = (signature(request), ids is None, key, position, timeout_ms, cur.connection.encoding)
        parts = self._texts.get(cache_key)
        if parts is None:
            parts = self._compose(cur, request, key, position, ids is not None, timeout_ms)
            with self._lock:
                self._texts[cache_key] = parts
                while len(self._texts) > self.size:
                    self._texts.popitem(last=False)
        head, tail = parts
        if tail is None:
            return head
        return head + "ARRAY[" + ",".join(map(str, ids)) + "]" + tail

    @staticmethod
    def _compose(cur, request: SearchRequest, key: GenerationKey, position: str, by_ids: bool,
                 timeout_ms: int | None) -> tuple[str, str | None]:
        where = facet_sql.where_clause(request)
        if by_ids:
            where = sql.SQL("({}) AND {} = ANY({}::bigint[])").format(
                where, sql.Identifier(ROW_ALIAS, "id"), sql.SQL(_IDS))
        # MATERIALIZED: the state row is computed once, not once per page row
        statement = sql.SQL("WITH m AS MATERIALIZED ({state}) SELECT * FROM m LEFT JOIN LATERAL ({page}) AS p "
                            "ON true ORDER BY {order}").format(
            state=change_log.state_sql(request.entity, key, position), page=facet_sql.page_query(request, where),
            order=facet_sql.order_terms(request, ("p",)))
        if timeout_ms is not None:  # one simple query: SET LOCAL holds for this implicit transaction only
            statement = sql.SQL("SET LOCAL statement_timeout = {}; {}").format(
                sql.Literal(str(int(timeout_ms))), statement)
        text = statement.as_string(cur)
        if not by_ids:
            return text, None
        # the last occurrence is the marker itself: a literal (a q) holding the same text comes before it
        head, _, tail = text.rpartition(_IDS)
        return head, tail

    def clear(self) -> None:
        with self._lock:
            self._texts.clear()


TEXTS = StatementTexts()
