"""The reports: one function per report, reading only the precomputed aggregates.

Every number comes from stored sums and counts: an average is a sum over a
count and a rate a count over a count, a quarter or year the sum of its
months' sums and counts (only months are stored), never an average of
averages, so every roll-up is exact. A report's rows are one statement over
one partition, sent as one row of columns with ``as_of`` from the same
snapshot, and kept per refresh generation (``crmtasks.reports.payloads``):
a call whose rows were kept is one round trip. Rows are decoded when read
(``crmtasks.reports.rows.Rows``).

Definitions (see also migration 0003):

- A closed deal's period is its ``close_date``; closed deals without a close
  date are in no period report. Open deals (every stage but the closed ones)
  make the pipeline, whatever their close date.
- A lead's period is its ``created_at`` month in UTC; converted means
  ``status = 'Converted'``.
- Sales cycle: ``close_date`` minus the UTC date of ``created_at``, in days.
- Amounts: NULL amounts count as deals but not in sums or averages; the
  weighted amount is the sum of ``amount * probability / 100`` (NULL
  probability adds nothing).
- Owners: rows carry the owner's id, name and whether the user is active (as
  of ``as_of``, like every number); deactivated owners keep their history, a
  reassigned deal counts for its current owner, and ``owner_id`` None means
  records with no owner.

Rounding: money to 2 decimals, days to 1, rates (0..1) to 4.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools

from psycopg2 import sql

from crmtasks.pg import db
from crmtasks.pg.combining import ALONE
from crmtasks.reports import periods
from crmtasks.reports.errors import ReportError
from crmtasks.reports.reading import COLUMN_KINDS, Report, digest_of, read, report_of  # noqa: F401 - COLUMN_KINDS and digest_of are still imported from here
from crmtasks.user_text import check_text

_OWNER_COLUMNS = ("owner_id", "owner_name", "owner_active")

def _memoized(builder):
    """``builder`` keeping its last 512 Queries by filters (typed: ``True`` is not ``1``), so a call composes no
    SQL and hashes no statement (a Query keeps its digest); an unhashable filter is built (and refused) as usual."""
    cached = functools.lru_cache(maxsize=512, typed=True)(builder)

    @functools.wraps(builder)
    def build(**filters) -> Query:
        try:
            return cached(**filters)
        except TypeError:
            return builder(**filters)
    return build


@dataclasses.dataclass(frozen=True)
class Query:
    """One report's SQL statement, its parameters and what the rows answer.

    Parameters:
      name(str): The report.
      statement(Composed): The SQL of the rows, in report order (``names``, without ``period``).
      names(tuple[str]): The statement's column names.
      params(dict): Its parameters.
      filters(dict): The filters, as returned in ``Report.filters``.
      grain(str|None): The grain of period rows (labels are added), None for current-state reports.
      owner(int|None): The owner filter, to tell "no such user" from "no rows".
      stage(str|None): The stage filter of the pipeline, to tell a closed stage from "no rows".
      digest(str|None): The payload key of the statement with its parameters, set on first use.
    """

    name: str
    statement: sql.Composed
    names: tuple
    params: dict
    filters: dict
    grain: str | None = None
    owner: int | None = None
    stage: str | None = None
    digest: str | None = dataclasses.field(default=None, compare=False)


def pipeline(*, owner: int | None = None, stage: str | None = None, by_owner: bool = False,
             connection=None) -> Report:
    """Open deals per stage: count, total, average and weighted amount.

    Parameters:
      owner(int|None): Only this owner's deals (rows per owner).
      stage(str|None): Only this (open) stage.
      by_owner(bool): One row per owner and stage instead of per stage over all owners.
    Rows are ordered by owner (when per owner), then stage.
    """
    return execute(pipeline_query(owner=owner, stage=stage, by_owner=by_owner), connection)


@_memoized
def pipeline_query(*, owner=None, stage=None, by_owner=False) -> Query:
    """The statement ``pipeline()`` sends (also used by the benchmark to time the SQL alone)."""
    _check_stage(stage)
    per_owner = _per_owner(owner, by_owner)
    conditions, params = _scope(per_owner, owner)
    if stage is not None:
        conditions.append(sql.SQL("a.stage = %(stage)s"))
        params["stage"] = stage
    order = [sql.SQL("a.owner_id"), sql.SQL("a.stage")] if per_owner else [sql.SQL("a.stage")]
    measures = [("deal_count", "a.deal_count"), ("amount_total", "a.amount_sum"),
                ("average_amount", "round(a.amount_sum / NULLIF(a.amount_count, 0), 2)"),
                ("weighted_amount", "round(a.amount_probability_sum / 100, 2)")]
    statement, names = _select(["stage"], per_owner, measures, _partition("report_open_pipeline", per_owner),
                               conditions, order)
    return Query("pipeline", statement, names, params, {"owner": owner, "stage": stage, "by_owner": per_owner},
                 owner=owner, stage=stage)


def revenue(*, owner: int | None = None, date_from: datetime.date | None = None,
            date_to: datetime.date | None = None, grain: str = "month", by_owner: bool = False,
            connection=None) -> Report:
    """Closed-won revenue and deal count per period (of close_date).

    Parameters:
      owner(int|None): Only this owner's deals (rows per owner).
      date_from, date_to(date|None): Whole periods of ``grain``, inclusive.
      grain(str): month, quarter or year.
      by_owner(bool): One row per owner and period instead of per period over all owners.
    Columns: deal_count, revenue (sum of known amounts), average_amount (over known amounts).
    """
    return execute(revenue_query(owner=owner, date_from=date_from, date_to=date_to, grain=grain,
                                 by_owner=by_owner), connection)


@_memoized
def revenue_query(*, owner=None, date_from=None, date_to=None, grain="month", by_owner=False) -> Query:
    """The statement ``revenue()`` sends (also used by the benchmark to time the SQL alone)."""
    measures = [("deal_count", "sum(a.won_count)"), ("revenue", "sum(a.won_amount_sum)"),
                ("average_amount", "round(sum(a.won_amount_sum) / NULLIF(sum(a.won_amount_count), 0), 2)")]
    # Periods with lost deals only belong to the win rate, not to revenue.
    return _period_query("revenue", "report_deal_periods", measures, sql.SQL("sum(a.won_count) > 0"), owner=owner,
                         date_from=date_from, date_to=date_to, grain=grain, by_owner=by_owner)


def win_rate(*, owner: int | None = None, date_from: datetime.date | None = None,
             date_to: datetime.date | None = None, grain: str = "quarter", by_owner: bool = False,
             connection=None) -> Report:
    """Won, lost and win rate = won / (won + lost) per period (of close_date), by deal count.

    Parameters: as for ``revenue``; the default grain is the quarter.
    """
    return execute(win_rate_query(owner=owner, date_from=date_from, date_to=date_to, grain=grain,
                                  by_owner=by_owner), connection)


@_memoized
def win_rate_query(*, owner=None, date_from=None, date_to=None, grain="quarter", by_owner=False) -> Query:
    """The statement ``win_rate()`` sends (also used by the benchmark to time the SQL alone)."""
    measures = [("won", "sum(a.won_count)"), ("lost", "sum(a.lost_count)"),
                ("win_rate", "round(sum(a.won_count) / NULLIF(sum(a.won_count) + sum(a.lost_count), 0), 4)")]
    return _period_query("win_rate", "report_deal_periods", measures, None,
                         owner=owner, date_from=date_from, date_to=date_to, grain=grain, by_owner=by_owner)


def sales_cycle(*, owner: int | None = None, date_from: datetime.date | None = None,
                date_to: datetime.date | None = None, grain: str = "month", stage: str | None = None,
                by_owner: bool = False, connection=None) -> Report:
    """Average days from created to closed, per period of close_date.

    Parameters: as for ``revenue``, plus
      stage(str|None): Only deals closed in this stage (won or lost); default both.
    """
    with db.using_connection(connection) as conn:  # one borrowed connection for both statements
        return execute(query_for("sales_cycle", conn, owner=owner, date_from=date_from, date_to=date_to, grain=grain,
                                 stage=stage, by_owner=by_owner), conn)


def query_for(name: str, conn, **filters) -> Query:
    """The Query of report ``name`` for ``filters`` (its function's keyword arguments, without ``connection``).

    A sales cycle stage is resolved to its outcome on ``conn`` (ReportError unless it is a closed stage).
    """
    if name != "sales_cycle":
        return _QUERIES[name](**filters)
    stage = filters.pop("stage", None)
    _check_stage(stage)
    outcome = None
    if stage is not None:
        outcome = _deal_outcome(stage, conn)
        if outcome is None:
            raise ReportError(f"stage {stage!r} is not a closed stage: the sales cycle is measured on "
                              "closed deals (won or lost)")
    return sales_cycle_query(outcome=outcome, stage=stage, **filters)


@_memoized
def sales_cycle_query(*, owner=None, date_from=None, date_to=None, grain="month", outcome=None, stage=None,
                      by_owner=False) -> Query:
    """The statement ``sales_cycle()`` sends; ``outcome`` is 'won', 'lost' or None for both (from the stage)."""
    if outcome is None:
        count = sql.SQL("sum(a.won_count + a.lost_count)")
        days = sql.SQL("sum(a.won_cycle_days_sum + a.lost_cycle_days_sum)")
    elif outcome in ("won", "lost"):
        count = sql.SQL("sum({})").format(sql.Identifier("a", f"{outcome}_count"))
        days = sql.SQL("sum({})").format(sql.Identifier("a", f"{outcome}_cycle_days_sum"))
    else:
        raise ReportError(f"outcome {outcome!r} is not 'won' or 'lost'")
    average = sql.SQL("round({days}::numeric / NULLIF({count}, 0), 1)").format(days=days, count=count)
    measures = [("deal_count", count), ("total_days", days), ("average_days", average)]
    return _period_query("sales_cycle", "report_deal_periods", measures,
                         sql.SQL("{} > 0").format(count) if outcome else None,
                         owner=owner, date_from=date_from, date_to=date_to, grain=grain, by_owner=by_owner,
                         extra_filters={"stage": stage})


def lead_conversion(*, owner: int | None = None, date_from: datetime.date | None = None,
                    date_to: datetime.date | None = None, grain: str = "month", by_owner: bool = False,
                    connection=None) -> Report:
    """Leads per source and period (of created_at, UTC), converted leads and the conversion rate.

    Parameters: as for ``revenue``. Rows are ordered by period, source, owner.
    """
    return execute(lead_conversion_query(owner=owner, date_from=date_from, date_to=date_to, grain=grain,
                                         by_owner=by_owner), connection)


@_memoized
def lead_conversion_query(*, owner=None, date_from=None, date_to=None, grain="month", by_owner=False) -> Query:
    """The statement ``lead_conversion()`` sends (also used by the benchmark to time the SQL alone)."""
    measures = [("leads", "sum(a.lead_count)"), ("converted", "sum(a.converted_count)"),
                ("conversion_rate", "round(sum(a.converted_count) / NULLIF(sum(a.lead_count), 0), 4)")]
    return _period_query("lead_conversion", "report_lead_periods", measures, None,
                         owner=owner, date_from=date_from, date_to=date_to, grain=grain, by_owner=by_owner,
                         dimension="source")


def accounts(*, owner: int | None = None, by_owner: bool = False, connection=None) -> Report:
    """Accounts per industry and region (None is a group of its own).

    Parameters:
      owner(int|None): Only this owner's accounts (rows per owner).
      by_owner(bool): One row per owner, industry and region (ordered by owner first).
    """
    return execute(accounts_query(owner=owner, by_owner=by_owner), connection)


@_memoized
def accounts_query(*, owner=None, by_owner=False) -> Query:
    """The statement ``accounts()`` sends (also used by the benchmark to time the SQL alone)."""
    per_owner = _per_owner(owner, by_owner)
    conditions, params = _scope(per_owner, owner)
    order = [sql.SQL("a.industry"), sql.SQL("a.region")]
    if per_owner:
        order.insert(0, sql.SQL("a.owner_id"))
    statement, names = _select(["industry", "region"], per_owner, [("account_count", "a.account_count")],
                               _partition("report_account_segments", per_owner), conditions, order)
    return Query("accounts", statement, names, params, {"owner": owner, "by_owner": per_owner}, owner=owner)


_QUERIES = {"pipeline": pipeline_query, "revenue": revenue_query, "win_rate": win_rate_query,
            "lead_conversion": lead_conversion_query, "accounts": accounts_query}


def _period_query(name, table, measures, nonempty, *, owner, date_from, date_to, grain, by_owner,
                  dimension=None, extra_filters=None) -> Query:
    """One period report: the month rows of ``table`` in range, summed per period of ``grain`` (and dimension, owner).

    ``measures`` are aggregates over the month rows, ``nonempty`` a HAVING condition (or None). Only months are
    stored (migration 0014); a month is its own group, a quarter or year the sum of its months' sums and counts.
    """
    periods.check_grain(grain)
    periods.check_range(date_from, date_to, grain)
    per_owner = _per_owner(owner, by_owner)
    conditions, params = _scope(per_owner, owner)
    if date_from is not None:
        conditions.append(sql.SQL("a.period_start >= %(date_from)s"))
        params["date_from"] = date_from
    if date_to is not None:
        conditions.append(sql.SQL("a.period_start <= %(date_to)s"))
        params["date_to"] = date_to
    period = sql.SQL("a.period_start") if grain == "month" else sql.SQL(
        "date_trunc({}, a.period_start)::date").format(sql.Literal(grain))
    named = [("period_start", period)] + ([(dimension, sql.Identifier("a", dimension))] if dimension else [])
    named += [(column, sql.Identifier("a", column)) for column in (_OWNER_COLUMNS if per_owner else ())]
    named += [(column, sql.SQL(expression) if isinstance(expression, str) else expression)
              for column, expression in measures]
    groups = sql.SQL(", ").join(sql.SQL(str(index)) for index in range(1, len(named) - len(measures) + 1))
    order = sql.SQL(", ").join(sql.SQL(str(index)) for index in range(1, 2 + bool(dimension)))
    where = sql.SQL(" WHERE {}").format(sql.SQL(" AND ").join(conditions)) if conditions else sql.SQL("")
    statement = sql.SQL("SELECT {columns} FROM {table} a{where} GROUP BY {groups}{having} ORDER BY {order}{owner}").format(
        columns=sql.SQL(", ").join(sql.SQL("{} AS {}").format(expression, sql.Identifier(column))
                                   for column, expression in named),
        table=sql.Identifier(_partition(table, per_owner, "month")), where=where, groups=groups,
        having=sql.SQL(" HAVING {}").format(nonempty) if nonempty is not None else sql.SQL(""),
        order=order, owner=sql.SQL(", a.owner_id") if per_owner else sql.SQL(""))
    filters = {"owner": owner, "date_from": date_from, "date_to": date_to, "grain": grain, "by_owner": per_owner,
               **(extra_filters or {})}
    return Query(name, statement, tuple(column for column, _ in named), params, filters, grain=grain, owner=owner)


def _check_stage(stage) -> None:
    """ReportError unless ``stage`` is None or text PostgreSQL can compare (valid UTF-8, no NUL)."""
    if stage is None:
        return
    if not isinstance(stage, str):
        raise ReportError(f"stage {stage!r} is not text")
    try:
        check_text(stage, "stage")
    except ValueError as error:
        raise ReportError(str(error)) from None


def _per_owner(owner, by_owner: bool) -> bool:
    if owner is not None and (isinstance(owner, bool) or not isinstance(owner, int) or owner < 1):
        raise ReportError(f"owner {owner!r} is not a user id (a whole number from 1)")
    return bool(by_owner) or owner is not None


def _partition(table: str, per_owner: bool, grain: str | None = None) -> str:
    """The partition holding exactly one report shape (migration 0003): read directly, it plans like a plain table."""
    return "_".join([table] + ([grain] if grain else []) + ["by_owner" if per_owner else "all"])


def _scope(per_owner: bool, owner: int | None) -> tuple[list, dict]:
    conditions, params = [], {}
    if owner is not None:
        conditions.append(sql.SQL("a.owner_id = %(owner)s"))
        params["owner"] = owner
    return conditions, params


def _select(keys: list[str], per_owner: bool, measures: list, table: str, conditions: list,
            order: list) -> tuple[sql.Composed, tuple[str, ...]]:
    """The ordered SELECT of one report shape and its column names: keys, owner columns, then measures.

    ``measures``: (name, expression) pairs; an expression is SQL text or Composable over alias ``a``.
    """
    named = [(key, sql.Identifier("a", key)) for key in keys]
    named += [(column, sql.Identifier("a", column)) for column in (_OWNER_COLUMNS if per_owner else ())]
    named += [(name, sql.SQL(expression) if isinstance(expression, str) else expression)
              for name, expression in measures]
    where = sql.SQL(" WHERE {}").format(sql.SQL(" AND ").join(conditions)) if conditions else sql.SQL("")
    statement = sql.SQL("SELECT {columns} FROM {table} a{where} ORDER BY {order}").format(
        columns=sql.SQL(", ").join(sql.SQL("{} AS {}").format(expression, sql.Identifier(name))
                                   for name, expression in named),
        table=sql.Identifier(table),
        where=where,
        order=sql.SQL(", ").join(order),
    )
    return statement, tuple(name for name, _ in named)


def execute(query: Query, connection=None) -> Report:
    """Run ``query`` and return its Report; ReportError or AggregatesNotReady when there is nothing to show.

    ``connection``: a psycopg2 connection of the caller's; default: a pooled one, borrowed for this call only.
    Then the same report asked by other threads while every place is taken is read once for all of them
    (crmtasks.pg.combining): each caller's rows are read after it asked, as alone.
    """
    if connection is None:
        pool = db.pool_to_lend()
        if pool is not None:
            return pool.combiner(_COMBINED_REPORTS).call(id(query), query, _execute_alone, _execute_together)
    with db.using_connection(connection) as conn:
        return _execute(query, conn)


# The pool's combiner of report calls; a request's key is its Query (memoized: the same filters, the same one).
_COMBINED_REPORTS = "reports"


def _execute_alone(query: Query) -> Report:
    with db.using_connection() as conn:
        return _execute(query, conn)


def _execute_together(_, queries: list[Query]) -> list:
    """One read of ``queries`` (one Query asked by several callers), a Report of its own for each caller.

    Without rows, each caller runs its own call (which says why there are none).
    """
    query = queries[0]
    with db.using_connection() as conn, conn.cursor() as cur:
        as_of, count, columns, digest = read(query, conn, cur)
    if not count:
        return [ALONE] * len(queries)
    return [report_of(query, as_of, count, columns, digest) for _ in queries]


def _execute(query: Query, conn) -> Report:
    with conn.cursor() as cur:
        as_of, count, columns, digest = read(query, conn, cur)
        if not count:
            _explain_no_rows(query, cur, conn)
    return report_of(query, as_of, count, columns, digest)


def _explain_no_rows(query: Query, cur, conn) -> None:
    """No rows: ReportError if that is because the owner does not exist or the pipeline's stage is closed."""
    if query.owner is not None:
        cur.execute("SELECT 1 FROM users WHERE id = %s", (query.owner,))
        if cur.fetchone() is None:
            raise ReportError(f"no user has id {query.owner}")
    if query.stage is not None and _deal_outcome(query.stage, conn):
        raise ReportError(f"stage {query.stage!r} is closed: the pipeline holds open deals only")


def _deal_outcome(stage: str, conn) -> str | None:
    with conn.cursor() as cur:
        cur.execute("SELECT report_deal_outcome(%s)", (stage,))
        return cur.fetchone()[0]
