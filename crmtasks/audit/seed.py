"""Demo audit rows: ``crmtasks seed --audit N``.

N rows spread over the 24 months before ``today``, generated inside
PostgreSQL by one INSERT ... SELECT over generate_series (no rows travel
from Python), deterministic for a seed: every choice is a hash of the row
number keyed by the seed (hashtextextended), never random().
"""

from __future__ import annotations

import datetime

from crmtasks.audit import queries
from crmtasks.audit.months import Month
from crmtasks.audit.partitions import create_months

SEED_MONTHS = 24


def months_spanned(today: datetime.date) -> list[Month]:
    """The months the demo rows may fall in: from 24 months before ``today`` to ``today``'s month."""
    last = Month.of(today)
    months, month = [], last.plus(-SEED_MONTHS)
    while month <= last:
        months.append(month)
        month = month.plus(1)
    return months


def seed_audit(conn, rows: int, seed: int = 42, today: datetime.date | None = None) -> dict:
    """Insert ``rows`` demo audit rows; create the partitions they need first. Returns counts.

    Parameters:
      conn: A psycopg2 connection (not autocommit); the rows are committed in one transaction.
      rows(int): How many rows (>= 1).
      seed(int): Same seed, rows and today -> same rows.
      today(date|None): The day the 24 months end (exclusive); default: today in UTC.

    Not idempotent: each call adds ``rows`` rows. Never deletes audit rows.
    """
    if rows < 1:
        raise ValueError(f"--audit must be 1 or more (got {rows})")
    today = today or datetime.datetime.now(datetime.timezone.utc).date()
    months = months_spanned(today)
    created = create_months(conn, months)
    try:
        with conn.cursor() as cur:
            cur.execute(queries.load("audit_seed"), {"rows": rows, "seed": seed, "today": today})
            inserted = cur.rowcount
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return {"audit_log": inserted, "audit partitions created": len(created)}

