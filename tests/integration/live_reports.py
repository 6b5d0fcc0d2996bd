"""The reports computed live from the raw tables: the oracle the aggregates are tested against.

Written independently of the job's SQL (plain GROUP BY with avg(), count
FILTER and date_trunc over deals, leads and accounts), with the same
definitions: a closed deal's period is its close_date, a lead's the UTC
date of created_at; NULL amounts count as deals but not in sums; averages
rounded to 2 decimals (money) or 1 (days), rates to 4.
"""

from __future__ import annotations

from psycopg2 import sql

WON, LOST = "Closed Won", "Closed Lost"
OWNER_COLUMNS = sql.SQL("t.owner_id, u.full_name, u.is_active")


def _query(conn, query, params):
    with conn.cursor() as cur:
        cur.execute(query, params)
        return [tuple(row) for row in cur.fetchall()]


def _owner_parts(owner, by_owner):
    per_owner = by_owner or owner is not None
    columns = sql.SQL(", {}").format(OWNER_COLUMNS) if per_owner else sql.SQL("")
    join = sql.SQL("LEFT JOIN users u ON u.id = t.owner_id") if per_owner else sql.SQL("")
    group = sql.SQL(", t.owner_id, u.full_name, u.is_active") if per_owner else sql.SQL("")
    order = sql.SQL(", t.owner_id") if per_owner else sql.SQL("")
    where = sql.SQL(" AND t.owner_id = %(owner)s") if owner is not None else sql.SQL("")
    return per_owner, columns, join, group, order, where


def _range(column, date_from, date_to):
    parts = []
    if date_from is not None:
        parts.append(sql.SQL(" AND {} >= %(date_from)s").format(column))
    if date_to is not None:
        parts.append(sql.SQL(" AND {} <= %(date_to)s").format(column))
    return sql.Composed(parts) if parts else sql.SQL("")


def _closed_deals(conn, measures, stages, *, owner, date_from, date_to, grain, by_owner):
    _, columns, join, group, order, where = _owner_parts(owner, by_owner)
    query = sql.SQL("""
        SELECT date_trunc(%(grain)s, t.close_date)::date AS period {columns}, {measures}
        FROM deals t {join}
        WHERE t.stage = ANY(%(stages)s) AND t.close_date IS NOT NULL {where} {range}
        GROUP BY 1 {group}
        ORDER BY 1 {order}
    """).format(columns=columns, measures=measures, join=join, where=where, group=group, order=order,
                range=_range(sql.SQL("t.close_date"), date_from, date_to))
    return _query(conn, query, {"grain": grain, "stages": list(stages), "owner": owner,
                                "date_from": date_from, "date_to": date_to})


def revenue(conn, *, owner=None, date_from=None, date_to=None, grain="month", by_owner=False):
    measures = sql.SQL("count(*), coalesce(sum(t.amount), 0), round(avg(t.amount), 2)")
    return _closed_deals(conn, measures, [WON], owner=owner, date_from=date_from, date_to=date_to, grain=grain,
                         by_owner=by_owner)


def win_rate(conn, *, owner=None, date_from=None, date_to=None, grain="quarter", by_owner=False):
    measures = sql.SQL("""count(*) FILTER (WHERE t.stage = 'Closed Won'), count(*) FILTER (WHERE t.stage = 'Closed Lost'),
                          round((count(*) FILTER (WHERE t.stage = 'Closed Won'))::numeric / count(*), 4)""")
    return _closed_deals(conn, measures, [WON, LOST], owner=owner, date_from=date_from, date_to=date_to,
                         grain=grain, by_owner=by_owner)


def sales_cycle(conn, *, owner=None, date_from=None, date_to=None, grain="month", stage=None, by_owner=False):
    days = sql.SQL("(t.close_date - (t.created_at AT TIME ZONE 'UTC')::date)")
    measures = sql.SQL("count(*), sum({days}), round(avg({days}), 1)").format(days=days)
    stages = [stage] if stage else [WON, LOST]
    return _closed_deals(conn, measures, stages, owner=owner, date_from=date_from, date_to=date_to, grain=grain,
                         by_owner=by_owner)


def lead_conversion(conn, *, owner=None, date_from=None, date_to=None, grain="month", by_owner=False):
    _, columns, join, group, order, where = _owner_parts(owner, by_owner)
    day = sql.SQL("(t.created_at AT TIME ZONE 'UTC')::date")
    query = sql.SQL("""
        SELECT date_trunc(%(grain)s, t.created_at AT TIME ZONE 'UTC')::date, t.source {columns},
               count(*), count(*) FILTER (WHERE t.status = 'Converted'),
               round((count(*) FILTER (WHERE t.status = 'Converted'))::numeric / count(*), 4)
        FROM leads t {join}
        WHERE true {where} {range}
        GROUP BY 1, 2 {group}
        ORDER BY 1, 2 {order}
    """).format(columns=columns, join=join, where=where, group=group, order=order,
                range=_range(day, date_from, date_to))
    return _query(conn, query, {"grain": grain, "owner": owner, "date_from": date_from, "date_to": date_to})


def pipeline(conn, *, owner=None, stage=None, by_owner=False):
    per_owner, columns, join, group, _, where = _owner_parts(owner, by_owner)
    query = sql.SQL("""
        SELECT t.stage {columns}, count(*), coalesce(sum(t.amount), 0), round(avg(t.amount), 2),
               round(coalesce(sum(t.amount * t.probability / 100.0), 0), 2)
        FROM deals t {join}
        WHERE t.stage NOT IN ('Closed Won', 'Closed Lost') {where} {stage}
        GROUP BY t.stage {group}
        ORDER BY {order_owner} t.stage
    """).format(columns=columns, join=join, where=where, group=group,
                stage=sql.SQL(" AND t.stage = %(stage)s") if stage else sql.SQL(""),
                order_owner=sql.SQL("t.owner_id,") if per_owner else sql.SQL(""))
    return _query(conn, query, {"owner": owner, "stage": stage})


def accounts(conn, *, owner=None, by_owner=False):
    per_owner, columns, join, group, _, where = _owner_parts(owner, by_owner)
    query = sql.SQL("""
        SELECT t.industry, t.region {columns}, count(*)
        FROM accounts t {join}
        WHERE true {where}
        GROUP BY t.industry, t.region {group}
        ORDER BY {order_owner} t.industry, t.region
    """).format(columns=columns, join=join, where=where, group=group,
                order_owner=sql.SQL("t.owner_id,") if per_owner else sql.SQL(""))
    return _query(conn, query, {"owner": owner})


LIVE = {"pipeline": pipeline, "revenue": revenue, "win_rate": win_rate, "sales_cycle": sales_cycle,
        "lead_conversion": lead_conversion, "accounts": accounts}
