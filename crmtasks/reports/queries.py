"""The reports: one function per report, reading only the precomputed aggregates.

Every number is derived from stored sums and counts at read time (an average
is a sum over a count, a rate a count over a count, a quarter the sum of its
months), never from averages, so any roll-up is exact. Each report is one
SQL statement over small, indexed tables (plus a second tiny one only when
it returns no rows), and it carries ``as_of`` from the same snapshot.

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
- Owners: rows carry the owner's id, name and whether the user is still
  active; deactivated owners keep their history, a reassigned deal counts for
  its current owner, and ``owner_id`` None means deals with no owner.

Rounding: money to 2 decimals, days to 1, rates (0..1) to 4.
"""

from __future__ import annotations

import dataclasses
import datetime

from psycopg2 import sql

from crmtasks.reports import periods
from crmtasks.reports.errors import AggregatesNotReady, ReportError


@dataclasses.dataclass(frozen=True)
class Report:
    """The rows of one report and the moment they describe.

    Parameters:
      name(str): The report's name (``revenue``...).
      columns(tuple[str]): Column names, in display order.
      rows(list[dict]): One dict per row: dates, ints, Decimals, str, bool or None.
      as_of(datetime): Every change committed before this instant is counted.
      filters(dict): The filters the rows answer.
    """

    name: str
    columns: tuple[str, ...]
    rows: list[dict]
    as_of: datetime.datetime
    filters: dict

    def as_dict(self) -> dict:
        return {"report": self.name, "as_of": self.as_of.isoformat(), "filters": self.filters, "rows": self.rows}


_AS_OF = sql.SQL("(SELECT as_of FROM report_aggregate_state) AS as_of")
_OWNER_COLUMNS = sql.SQL("a.owner_id, u.full_name AS owner_name, u.is_active AS owner_active")
_OWNER_JOIN = sql.SQL("LEFT JOIN users u ON u.id = a.owner_id")


def pipeline(*, owner: int | None = None, stage: str | None = None, by_owner: bool = False,
             connection=None) -> Report:
    """Open deals per stage: count, total, average and weighted amount.

    Parameters:
      owner(int|None): Only this owner's deals (rows per owner).
      stage(str|None): Only this (open) stage.
      by_owner(bool): One row per owner and stage instead of per stage over all owners.
    Rows are ordered by owner (when per owner), then stage.
    """
    per_owner = _per_owner(owner, by_owner)
    measures = sql.SQL("""a.deal_count, a.amount_sum AS amount_total,
        round(a.amount_sum / NULLIF(a.amount_count, 0), 2) AS average_amount,
        round(a.amount_probability_sum / 100, 2) AS weighted_amount""")
    conditions, params = _scope(per_owner, owner)
    if stage is not None:
        conditions.append(sql.SQL("a.stage = %(stage)s"))
        params["stage"] = stage
    order = [sql.SQL("a.owner_id"), sql.SQL("a.stage")] if per_owner else [sql.SQL("a.stage")]
    query = _select(sql.SQL("a.stage"), per_owner, measures, "report_open_pipeline", conditions, order)
    filters = {"owner": owner, "stage": stage, "by_owner": per_owner}
    report = _run("pipeline", query, params, filters, connection, owner=owner)
    if not report.rows and stage is not None and _deal_outcome(stage, connection):
        raise ReportError(f"stage {stage!r} is closed: the pipeline holds open deals only")
    return report


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
    measures = sql.SQL("""a.won_count AS deal_count, a.won_amount_sum AS revenue,
        round(a.won_amount_sum / NULLIF(a.won_amount_count, 0), 2) AS average_amount""")
    return _period_report("revenue", "report_deal_periods", measures, sql.SQL("a.won_count > 0"),
                          owner=owner, date_from=date_from, date_to=date_to, grain=grain, by_owner=by_owner,
                          connection=connection)


def win_rate(*, owner: int | None = None, date_from: datetime.date | None = None,
             date_to: datetime.date | None = None, grain: str = "quarter", by_owner: bool = False,
             connection=None) -> Report:
    """Won, lost and win rate = won / (won + lost) per period (of close_date), by deal count.

    Parameters: as for ``revenue``; the default grain is the quarter.
    """
    measures = sql.SQL("""a.won_count AS won, a.lost_count AS lost,
        round(a.won_count::numeric / (a.won_count + a.lost_count), 4) AS win_rate""")
    return _period_report("win_rate", "report_deal_periods", measures, sql.SQL("a.won_count + a.lost_count > 0"),
                          owner=owner, date_from=date_from, date_to=date_to, grain=grain, by_owner=by_owner,
                          connection=connection)


def sales_cycle(*, owner: int | None = None, date_from: datetime.date | None = None,
                date_to: datetime.date | None = None, grain: str = "month", stage: str | None = None,
                by_owner: bool = False, connection=None) -> Report:
    """Average days from created to closed, per period of close_date.

    Parameters: as for ``revenue``, plus
      stage(str|None): Only deals closed in this stage (won or lost); default both.
    """
    outcomes = ("won", "lost")
    if stage is not None:
        outcome = _deal_outcome(stage, connection)
        if outcome is None:
            raise ReportError(f"stage {stage!r} is not a closed stage: the sales cycle is measured on "
                              "closed deals (won or lost)")
        outcomes = (outcome,)
    count = sql.SQL(" + ").join(sql.Identifier("a", f"{outcome}_count") for outcome in outcomes)
    days = sql.SQL(" + ").join(sql.Identifier("a", f"{outcome}_cycle_days_sum") for outcome in outcomes)
    measures = sql.SQL("({count}) AS deal_count, ({days}) AS total_days, "
                       "round(({days})::numeric / ({count}), 1) AS average_days").format(count=count, days=days)
    return _period_report("sales_cycle", "report_deal_periods", measures, sql.SQL("({}) > 0").format(count),
                          owner=owner, date_from=date_from, date_to=date_to, grain=grain, by_owner=by_owner,
                          connection=connection, extra_filters={"stage": stage})


def lead_conversion(*, owner: int | None = None, date_from: datetime.date | None = None,
                    date_to: datetime.date | None = None, grain: str = "month", by_owner: bool = False,
                    connection=None) -> Report:
    """Leads per source and period (of created_at, UTC), converted leads and the conversion rate.

    Parameters: as for ``revenue``. Rows are ordered by period, source, owner.
    """
    measures = sql.SQL("""a.lead_count AS leads, a.converted_count AS converted,
        round(a.converted_count::numeric / a.lead_count, 4) AS conversion_rate""")
    return _period_report("lead_conversion", "report_lead_periods", measures, sql.SQL("a.lead_count > 0"),
                          owner=owner, date_from=date_from, date_to=date_to, grain=grain, by_owner=by_owner,
                          connection=connection, dimension=sql.SQL("a.source"))


def accounts(*, owner: int | None = None, by_owner: bool = False, connection=None) -> Report:
    """Accounts per industry and region (None is a group of its own).

    Parameters:
      owner(int|None): Only this owner's accounts (rows per owner).
      by_owner(bool): One row per owner, industry and region.
    """
    per_owner = _per_owner(owner, by_owner)
    conditions, params = _scope(per_owner, owner)
    order = [sql.SQL("a.industry"), sql.SQL("a.region")]
    if per_owner:
        order.insert(0, sql.SQL("a.owner_id"))
    query = _select(sql.SQL("a.industry, a.region"), per_owner, sql.SQL("a.account_count"),
                    "report_account_segments", conditions, order)
    return _run("accounts", query, params, {"owner": owner, "by_owner": per_owner}, connection, owner=owner)


def _period_report(name, table, measures, nonempty, *, owner, date_from, date_to, grain, by_owner, connection,
                   dimension=None, extra_filters=None) -> Report:
    periods.check_grain(grain)
    periods.check_range(date_from, date_to, grain)
    per_owner = _per_owner(owner, by_owner)
    conditions, params = _scope(per_owner, owner)
    conditions[:0] = [sql.SQL("a.grain = %(grain)s")]
    conditions.append(nonempty)
    params["grain"] = grain
    if date_from is not None:
        conditions.append(sql.SQL("a.period_start >= %(date_from)s"))
        params["date_from"] = date_from
    if date_to is not None:
        conditions.append(sql.SQL("a.period_start <= %(date_to)s"))
        params["date_to"] = date_to
    keys = [sql.SQL("a.period_start")] + ([dimension] if dimension is not None else [])
    order = keys + ([sql.SQL("a.owner_id")] if per_owner else [])
    query = _select(sql.SQL(", ").join(keys), per_owner, measures, table, conditions, order)
    filters = {"owner": owner, "date_from": date_from, "date_to": date_to, "grain": grain, "by_owner": per_owner,
               **(extra_filters or {})}
    report = _run(name, query, params, filters, connection, owner=owner)
    for row in report.rows:
        row["period"] = periods.label(row["period_start"], grain)
    columns = ("period",) + report.columns
    rows = [{column: row[column] for column in columns} for row in report.rows]
    return dataclasses.replace(report, columns=columns, rows=rows)


def _per_owner(owner, by_owner: bool) -> bool:
    if owner is not None and (isinstance(owner, bool) or not isinstance(owner, int) or owner < 1):
        raise ReportError(f"owner {owner!r} is not a user id (a whole number from 1)")
    return bool(by_owner) or owner is not None


def _scope(per_owner: bool, owner: int | None) -> tuple[list, dict]:
    conditions = [sql.SQL("a.all_owners = %(all_owners)s")]
    params = {"all_owners": not per_owner}
    if owner is not None:
        conditions.append(sql.SQL("a.owner_id = %(owner)s"))
        params["owner"] = owner
    return conditions, params


def _select(keys, per_owner: bool, measures, table: str, conditions: list, order: list) -> sql.Composed:
    columns = [_AS_OF, keys] + ([_OWNER_COLUMNS] if per_owner else []) + [measures]
    return sql.SQL("SELECT {columns} FROM {table} a {join} WHERE {conditions} ORDER BY {order}").format(
        columns=sql.SQL(", ").join(columns),
        table=sql.Identifier(table),
        join=_OWNER_JOIN if per_owner else sql.SQL(""),
        conditions=sql.SQL(" AND ").join(conditions),
        order=sql.SQL(", ").join(order),
    )


def _run(name: str, query: sql.Composed, params: dict, filters: dict, connection, *, owner=None) -> Report:
    conn = connection if connection is not None else default_connection()
    with conn.cursor() as cur:
        cur.execute(query, params)
        columns = tuple(column.name for column in cur.description[1:])
        fetched = cur.fetchall()
        if fetched:
            as_of = fetched[0][0]
        else:
            # No rows: was there nothing to report, or nothing computed, or no such owner?
            cur.execute("SELECT as_of FROM report_aggregate_state")
            state = cur.fetchone()
            as_of = state[0] if state else None
            if as_of is not None and owner is not None:
                cur.execute("SELECT 1 FROM users WHERE id = %s", (owner,))
                if cur.fetchone() is None:
                    raise ReportError(f"no user has id {owner}")
    if as_of is None:
        raise AggregatesNotReady()
    rows = [dict(zip(columns, record[1:])) for record in fetched]
    return Report(name=name, columns=columns, rows=rows, as_of=as_of, filters=filters)


def _deal_outcome(stage: str, connection) -> str | None:
    conn = connection if connection is not None else default_connection()
    with conn.cursor() as cur:
        cur.execute("SELECT report_deal_outcome(%s)", (stage,))
        return cur.fetchone()[0]


def default_connection():
    """This thread's connection from crmtasks' pooled database (bound from settings on first use)."""
    from crmtasks import db

    if db.database.obj is None:
        db.bind()
    return db.database.connection()
