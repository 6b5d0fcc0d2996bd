"""Demo audit rows: what ``crmtasks seed --audit N`` adds.

Why: audit maintenance (premaking months, retention by archive or delete)
only shows what it does on a log with two years of partitions. N rows are
spread over the :data:`AUDIT_HISTORY_MONTHS` months before ``today``,
generated inside PostgreSQL by one INSERT ... SELECT over generate_series
(``sql/audit_rows.sql``; no row travels from Python), deterministic for a
seed: every choice is a hash of the row number keyed by the seed
(``hashtextextended``), never ``random()``.
"""

from __future__ import annotations

import datetime

from crmtasks.audit.months import Month
from crmtasks.audit.partitions import create_months
from crmtasks.demo.schema import DeferredSchema
from crmtasks.pg import load_sql, transaction

# The demo audit rows fall in the months from this many months before today's month to today's month.
AUDIT_HISTORY_MONTHS = 24


def months_spanned(today: datetime.date) -> list[Month]:
    """The months the demo audit rows may fall in: from 24 months before ``today``'s month to that month.

    Parameters:
      today(date): The day the history ends (exclusive).
    """
    last = Month.of(today)
    months, month = [], last.plus(-AUDIT_HISTORY_MONTHS)
    while month <= last:
        months.append(month)
        month = month.plus(1)
    return months


def seed_audit(conn, rows: int, seed: int = 42, today: datetime.date | None = None, *,
               defer_indexes: bool = False) -> dict:
    """Insert ``rows`` demo audit rows; create the partitions they need first. Returns counts.

    The Python side of ``crmtasks seed --audit N``.

    Parameters:
      conn(connection): A psycopg2 connection with no transaction open (autocommit
        mode or not). Each missing month is created in a committed transaction of
        its own; then the rows are inserted and committed in one transaction.
      rows(int): How many rows (>= 1).
      seed(int): The random seed: same seed, rows and today -> same rows.
      today(date|None): The day the 24 months end (exclusive); default: today in UTC.
      defer_indexes(bool): Drop audit_log's plain indexes for the insert and build them again after it,
        in the same transaction (about a third faster for millions of rows), at the price of an ACCESS
        EXCLUSIVE lock on audit_log until the commit: for a scratch database (the benchmark's), never
        for a log that is being written to.

    Returns ``{"audit_log": rows inserted, "audit partitions created": months created}``.
    Not idempotent: each call adds ``rows`` rows. Never deletes audit rows.
    """
    if rows < 1:
        raise ValueError(f"--audit must be 1 or more (got {rows})")
    today = today or datetime.datetime.now(datetime.timezone.utc).date()
    created = create_months(conn, months_spanned(today))
    with transaction(conn) as cur:
        deferred = DeferredSchema.capture(cur, ("audit_log",)) if defer_indexes else None
        if deferred is not None:
            deferred.drop(cur)
        cur.execute(load_sql("crmtasks.demo", "audit_rows"), {"rows": rows, "seed": seed, "today": today})
        inserted = cur.rowcount
        if deferred is not None:  # the catalog says "ON ONLY" for a partitioned table's index: build every partition's
            deferred.restore(cur, definition=lambda text: text.replace(" ON ONLY ", " ON ", 1))
    return {"audit_log": inserted, "audit partitions created": len(created)}
