"""Rows per month and entity (``month_counts``): whole months counted once, the rest live, always exact.

"How much happened per month, per kind of record, this past year" reads
millions of rows when counted live (3.7M of the bench's 5M for twelve
months). But a month before the current one rarely changes, and its rows
sit in one partition of their own: the daily maintenance counts each such
month once (``count_past_months``) and keeps the result in
``audit_month_counts``. A statement trigger on audit_log deletes a month's
kept counts in the same transaction as any insert, update or delete of a
row of that month (a late or back-dated audit row), so a reader sees, in
its snapshot, either counts that match the rows or none; months without
kept counts (the current month, a changed month, one restored since) are
counted live in the same snapshot. The answer equals a live ``GROUP BY``
over the same rows, whatever happened in between.

Counting a month takes a SHARE lock on its partition, for the duration of
one scan of that month (about 0.1 s per million rows): a writer inserting
into that past month waits that long, once; writers of the current month
never do. The count runs without parallel workers, so it takes one core at
most. Rows written straight into a partition table (not through audit_log)
bypass the trigger: write through audit_log.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging

from psycopg2 import sql

from crmtasks.audit.months import PARENT_TABLE, Month, current_month
from crmtasks.audit.partitions import list_partitions
from crmtasks.pg import db, load_sql, transaction

log = logging.getLogger(__name__)

_MONTH = sql.SQL("date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date")


@dataclasses.dataclass(frozen=True, order=True)
class MonthCount:
    """Audit rows of one entity in one UTC month.

    Parameters:
      month(date): The month's first day.
      entity(str): lead, deal, contact, account, user, ...
      rows(int): How many audit rows.
    """

    month: datetime.date
    entity: str
    rows: int


def count_past_months(conn, current: Month) -> int:
    """Count every attached month before ``current`` that has no kept counts; return how many were counted.

    A maintenance step (idempotent, kill -9 safe: each month is one
    transaction). Also forgets counts of tables no longer attached.

    Parameters:
      conn: A psycopg2 connection with no transaction open.
      current(Month): The month still being written; it and later ones are never kept.
    """
    with transaction(conn) as cur:
        cur.execute("DELETE FROM audit_month_counts c WHERE NOT EXISTS ("
                    "SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.partition_oid "
                    "AND i.inhparent = 'audit_log'::regclass)")
        cur.execute("SELECT month FROM audit_month_counts")
        kept = {row[0] for row in cur.fetchall()}
        partitions = list_partitions(conn)
    counted = 0
    for part in partitions:
        month = part.month
        if month is None or month >= current or month.first_day in kept or part.detach_pending:
            continue
        # One backend per count: parallel workers would take every core from the application's writers.
        with transaction(conn, local={"max_parallel_workers_per_gather": "0"}) as cur:
            table = sql.Identifier(part.name)
            # SHARE: writers of this (past) month wait for the count, so no row can slip between it and the keep.
            cur.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(table))
            cur.execute(sql.SQL("SELECT entity, count(*) FROM ONLY {} GROUP BY entity").format(table))
            counts = dict(cur.fetchall())
            cur.execute("INSERT INTO audit_month_counts (month, partition_oid, counts) "
                        "VALUES (%s, %s::regclass, %s) ON CONFLICT (month) DO UPDATE "
                        "SET partition_oid = EXCLUDED.partition_oid, counts = EXCLUDED.counts, counted_at = now()",
                        (month.first_day, table.as_string(cur), json.dumps(counts)))
        counted += 1
    if counted:
        log.info("audit_log: counted %d past month(s) for month_counts", counted)
    return counted


def month_counts(months: int = 12, *, now: datetime.datetime | None = None, connection=None) -> list[MonthCount]:
    """Audit rows per UTC month and entity from the start of the month ``months - 1`` before now, sorted.

    Exact for one snapshot; equal to ``SELECT date_trunc('month', occurred_at
    AT TIME ZONE 'UTC')::date, entity, count(*) FROM audit_log WHERE
    occurred_at >= <that month's start> GROUP BY 1, 2`` (later months included).

    Parameters:
      months(int): How many months, the current one included (1 to 1200).
      now(datetime|None): The clock (tests); default: now, UTC.
      connection: A psycopg2 connection of the caller's; default: a pooled one for this call only.
    """
    if isinstance(months, bool) or not isinstance(months, int) or not 1 <= months <= 1200:
        raise ValueError(f"months must be a whole number from 1 to 1200 (got {months!r})")
    since = current_month(now).plus(-(months - 1))
    with db.using_connection(connection) as conn, transaction(conn, repeatable_read=True, read_only=True) as cur:
        cur.execute(load_sql("crmtasks.audit", "month_counts_kept"), {"since": since.first_day})
        kept = dict(cur.fetchall())
        cur.execute(_live_query(since, sorted(kept)))
        live = cur.fetchall()
    found = [MonthCount(month, entity, rows) for month, counts in kept.items() for entity, rows in counts.items()]
    found += [MonthCount(month, entity, rows) for month, entity, rows in live]
    return sorted(found)


def _live_query(since: Month, kept: list[datetime.date]) -> sql.Composable:
    """Count live every row from ``since`` on outside the kept months, with literal bounds (plan-time pruning)."""
    ranges, start = [], since
    for first_day in kept:
        kept_month = Month.of(first_day)
        if kept_month > start:
            ranges.append((start.start, kept_month.start))
        start = kept_month.plus(1)
    bounds = [sql.SQL("(occurred_at >= {} AND occurred_at < {})").format(sql.Literal(a), sql.Literal(b))
              for a, b in ranges]
    bounds.append(sql.SQL("occurred_at >= {}").format(sql.Literal(start.start)))
    return sql.SQL("SELECT {month}, entity, count(*) FROM {table} WHERE {where} GROUP BY 1, 2").format(
        month=_MONTH, table=sql.Identifier(PARENT_TABLE), where=sql.SQL(" OR ").join(bounds))
