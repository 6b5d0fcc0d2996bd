"""SQL built from the facet registry, shared by the precompute job and search.

Every statement is composed from ``psycopg2.sql`` objects: names come from the
registry (``Identifier``), values are ``Literal``. Counting is always done by
PostgreSQL with ``GROUP BY GROUPING SETS`` over one scan, so no record row is
ever sent to Python.

Grouping keys are numbered ``k0..kn`` in the entity's facet order; a result
row's ``GROUPING(k0, ..., kn)`` bitmask says which set it belongs to (bit
``n - i`` is 1 when ``ki`` is *not* in the set).
"""

from __future__ import annotations

from psycopg2 import sql

from crmtasks.search.facets import Entity
from crmtasks.search.kinds import ROW_ALIAS
from crmtasks.search.request import RANGE_OPERATORS, SearchRequest


def grouping_mask(facet_count: int, grouped: tuple[int, ...]) -> int:
    """The ``GROUPING(k0..)`` value of rows grouped by the keys at positions ``grouped``."""
    return sum(1 << (facet_count - 1 - i) for i in range(facet_count) if i not in grouped)


def _key(i: int) -> sql.Identifier:
    return sql.Identifier(f"k{i}")


def _keys(entity: Entity) -> sql.Composable:
    return sql.SQL(", ").join(_key(i) for i in range(len(entity.facets)))


def keyed_rows(entity: Entity, where: sql.Composable) -> sql.Composable:
    """``SELECT <bucket key of each facet> AS k0.. FROM <entity> WHERE <where>``."""
    keys = sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(facet.kind.key_sql(), _key(i)) for i, facet in enumerate(entity.facets))
    return sql.SQL("SELECT {keys} FROM {source} WHERE {where}").format(
        keys=keys, source=entity.from_sql(), where=where)


def _grouping_sets(sets: list[tuple[int, ...]]) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.SQL("({})").format(sql.SQL(", ").join(_key(i) for i in grouped)) for grouped in sets)


def grouped_counts(entity: Entity, where: sql.Composable, sets: list[tuple[int, ...]]) -> sql.Composable:
    """Counts of the rows matching ``where`` for each grouping set, keys as text.

    Columns: ``grouping_mask, v0..vn (text), n (bigint)``. The keys are
    text in the "C" collation: they are compared and sorted again when counts
    are derived from these groups, and byte order is several times cheaper
    than a language's collation.
    """
    values = sql.SQL(", ").join(
        sql.SQL("{}::text COLLATE \"C\" AS {}").format(_key(i), sql.Identifier(f"v{i}")) for i in range(len(entity.facets)))
    return sql.SQL(
        "SELECT GROUPING({keys}) AS grouping_mask, {values}, count(*) AS n "
        "FROM ({rows}) AS keyed GROUP BY GROUPING SETS ({sets})"
    ).format(keys=_keys(entity), values=values, rows=keyed_rows(entity, where), sets=_grouping_sets(sets))


def single_sets(entity: Entity) -> list[tuple[int, ...]]:
    return [(i,) for i in range(len(entity.facets))]


def where_clause(request: SearchRequest) -> sql.Composable:
    """The row condition of a checked request (``TRUE`` when it has none)."""
    conditions: list[sql.Composable] = []
    for facet_filter in request.facet_filters:
        conditions.append(facet_filter.facet.kind.condition(facet_filter.keys, facet_filter.null_included))
    for range_filter in request.range_filters:
        column = sql.Identifier(ROW_ALIAS, range_filter.column)
        for operator, value in range_filter.bounds:
            conditions.append(sql.SQL("{} {} {}").format(column, sql.SQL(RANGE_OPERATORS[operator]), sql.Literal(value)))
    if request.q is not None:
        pattern = "%" + like_escape(request.q) + "%"
        conditions.append(sql.SQL("({})").format(sql.SQL(" OR ").join(
            sql.SQL("{} ILIKE {}").format(sql.Identifier(ROW_ALIAS, column), sql.Literal(pattern))
            for column in request.entity.text_columns)))
    if not conditions:
        return sql.SQL("TRUE")
    return sql.SQL(" AND ").join(conditions)


def like_escape(text: str) -> str:
    """``text`` with LIKE's wildcards escaped, so it matches literally (backslash is LIKE's default escape)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _order(request: SearchRequest, alias: tuple[str, ...], column_names: tuple[str, str] | None = None) -> sql.Composable:
    """ORDER BY terms of the page: the sort column, then the id in the same direction."""
    column, descending = request.order
    direction = sql.SQL("DESC" if descending else "ASC")
    order_column, id_column = column_names or (column, "id")
    terms = [sql.SQL("{} {}").format(sql.Identifier(*alias, order_column), direction)]
    if column != "id":
        terms.append(sql.SQL("{} {}").format(sql.Identifier(*alias, id_column), direction))
    return sql.SQL(", ").join(terms)


def order_terms(request: SearchRequest, alias: tuple[str, ...]) -> sql.Composable:
    """ORDER BY terms of the page over the record columns of ``alias`` (a subquery of ``page_query``)."""
    return _order(request, alias)


def page_query(request: SearchRequest, where: sql.Composable) -> sql.Composable:
    """One page of matching records, in a stable order (the id breaks ties)."""
    return sql.SQL("SELECT {columns} FROM {source} WHERE {where} ORDER BY {order} LIMIT {limit} OFFSET {offset}").format(
        columns=request.entity.record_columns_sql(), source=request.entity.from_sql(), where=where,
        order=_order(request, (ROW_ALIAS,)), limit=sql.Literal(request.per_page), offset=sql.Literal(request.offset))


def counts_and_page_ids(request: SearchRequest, where: sql.Composable) -> sql.Composable:
    """Live counts per facet value and the ids of the page, from one pass over the matching rows.

    For a text search: finding the rows (trigram index, then re-checking
    ILIKE on each candidate's table row) is the expensive part, so it is done
    once. Rows: one ``(NULL, NULL.., NULL, page ids)`` row, then
    ``(grouping_mask, v0..vn, n, NULL)`` per bucket as ``grouped_counts``.
    """
    entity = request.entity
    count = len(entity.facets)
    column, _ = request.order
    keys = sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(facet.kind.key_sql(), _key(i)) for i, facet in enumerate(entity.facets))
    values = sql.SQL(", ").join(
        sql.SQL("{}::text COLLATE \"C\" AS {}").format(_key(i), sql.Identifier(f"v{i}")) for i in range(count))
    nulls = sql.SQL(", ").join(sql.SQL("NULL::text") for _ in range(count))
    return sql.SQL(
        "WITH matching AS MATERIALIZED (SELECT {row_id} AS row_id, {order_column} AS order_value, {keys} "
        "FROM {source} WHERE {where}) "
        "SELECT NULL::int, {nulls}, NULL::bigint, ARRAY(SELECT row_id FROM matching ORDER BY {order} "
        "LIMIT {limit} OFFSET {offset}) "
        "UNION ALL "
        "SELECT GROUPING({key_names}), {values}, count(*), NULL FROM matching GROUP BY GROUPING SETS ({sets})"
    ).format(
        row_id=sql.Identifier(ROW_ALIAS, "id"), order_column=sql.Identifier(ROW_ALIAS, column), keys=keys,
        source=entity.from_sql(), where=where, nulls=nulls,
        order=_order(request, (), ("order_value", "row_id")),
        limit=sql.Literal(request.per_page), offset=sql.Literal(request.offset),
        key_names=_keys(entity), values=values, sets=_grouping_sets(single_sets(entity)))


def records_by_id(entity: Entity, ids: list[int]) -> sql.Composable:
    """The records with these ids (any order)."""
    return sql.SQL("SELECT {columns} FROM {source} WHERE {row_id} = ANY({ids}::bigint[])").format(
        columns=entity.record_columns_sql(), source=entity.from_sql(), row_id=sql.Identifier(ROW_ALIAS, "id"),
        ids=sql.Literal(list(ids)))
