"""Reading a report's rows: the payload kept for the published generation, else the columnar statement.

A report call is one round trip when its rows were kept (crmtasks.reports.payloads); the rows come as
columns and are decoded when read (crmtasks.reports.rows). Split from crmtasks.reports.queries (which
composes the statements) so that a read can serve one caller or several asking the same at once
(crmtasks.reports.queries.execute): ``read`` once, ``report_of`` for each caller. ``query`` is always a
crmtasks.reports.queries.Query (not imported here: that module imports this one).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence

from crmtasks.reports import payloads
from crmtasks.reports.errors import AggregatesNotReady
from crmtasks.reports.rows import Rows


@dataclasses.dataclass(frozen=True)
class Report:
    """The rows of one report and the moment they describe.

    Parameters:
      name(str): The report's name (``revenue``...).
      columns(tuple[str]): Column names, in display order.
      rows(Sequence[dict]): One dict per row: dates, ints, Decimals, str, bool or None. A ``Rows`` (decoded
        when read, equal to the list of those dicts), not a list: it cannot be modified.
      as_of(datetime): Every change committed before this instant is counted.
      filters(dict): The filters the rows answer.
      cache(str|None): The payload key of these rows' statement (crmtasks.reports.payloads), None without rows;
        their csv and json bytes are kept under it for ``as_of``'s generation.
    """

    name: str
    columns: tuple[str, ...]
    rows: Sequence[dict]
    as_of: datetime.datetime
    filters: dict
    cache: str | None = dataclasses.field(default=None, compare=False, repr=False)

    def as_dict(self) -> dict:
        return {"report": self.name, "as_of": self.as_of.isoformat(), "filters": self.filters,
                "rows": list(self.rows)}


# How each column of a report travels and is decoded (crmtasks.reports.rows.KINDS).
COLUMN_KINDS = {
    "period_start": "date", "stage": "text", "source": "text", "industry": "text", "region": "text",
    "owner_id": "int", "owner_name": "text", "owner_active": "bool",
    "deal_count": "int", "won": "int", "lost": "int", "total_days": "int", "leads": "int", "converted": "int",
    "account_count": "int",
    "amount_total": "decimal", "average_amount": "decimal", "weighted_amount": "decimal", "revenue": "decimal",
    "win_rate": "decimal", "average_days": "decimal", "conversion_rate": "decimal",
}


# The change log feeding each report's aggregates (crmtasks.reports.fold.SOURCES): a run that folds none of its
# changes leaves its rows as they were, and its payloads are carried to the new generation.
REPORT_SOURCES = {"pipeline": "deals", "revenue": "deals", "win_rate": "deals", "sales_cycle": "deals",
                  "lead_conversion": "leads", "accounts": "accounts"}


def read(query, conn, cur) -> tuple:
    """(as_of, row count, columns as sent, payload key) of ``query``: the payload kept, else read and kept."""
    digest = digest_of(query, cur)
    as_of, data = payloads.lookup(cur, digest, "columns")
    if as_of is None:
        raise AggregatesNotReady()
    if data is not None:
        count, columns = payloads.decode(data)
    else:
        kinds = tuple(COLUMN_KINDS[name] for name in query.names)
        cur.execute(payloads.columnar_statement(query.statement, query.names, kinds), query.params)
        as_of, count, *columns = cur.fetchone()
        if as_of is None:
            raise AggregatesNotReady()
        if count:
            payloads.store(conn, digest, "columns", as_of, payloads.encode(count, columns),
                           source=REPORT_SOURCES.get(query.name))
    return as_of, count, columns, digest


def report_of(query, as_of, count: int, columns: list, digest: str) -> Report:
    """A Report over ``columns`` (decoded when read; a Report, and its Rows, of its own for each caller)."""
    kinds = tuple(COLUMN_KINDS[name] for name in query.names)
    if query.grain is None:
        return Report(query.name, query.names, Rows(query.names, kinds, columns, count), as_of, dict(query.filters),
                      cache=digest if count else None)
    names = ("period", *query.names)
    rows = Rows(names, ("period", *kinds), (None, *columns), count, query.grain)
    return Report(query.name, names, rows, as_of, dict(query.filters), cache=digest if count else None)


def digest_of(query, cur) -> str:
    """``query``'s payload key (crmtasks.reports.payloads.statement_digest), computed once per Query."""
    if query.digest is None:
        object.__setattr__(query, "digest", payloads.statement_digest(cur, query.statement, query.params))
    return query.digest
