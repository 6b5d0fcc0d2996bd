"""audit_log's partitions: reading them from the catalog and creating months.

Creation never takes a lock that blocks writers: a month is created as a
plain table and then ATTACHed, which needs only SHARE UPDATE EXCLUSIVE on
audit_log (inserts and reads go on). ``CREATE TABLE ... PARTITION OF`` would
take ACCESS EXCLUSIVE on the parent and queue every writer behind any
long-running reader.
"""

from __future__ import annotations

import dataclasses
import datetime

from psycopg2 import sql

from crmtasks.audit.months import PARENT_TABLE, Month
from crmtasks.errors import CrmtasksError
from crmtasks.pg import AdvisoryLock, load_sql, transaction


class PartitionConflict(CrmtasksError):
    """A month cannot be created because something already occupies its name or part of its range."""


@dataclasses.dataclass(frozen=True)
class Partition:
    """One partition of audit_log as the catalog describes it.

    Parameters:
      name(str): The relation's real name (not necessarily audit_log_pYYYYMM).
      range_start(datetime|None): Inclusive lower bound; None = MINVALUE (or DEFAULT).
      range_end(datetime|None): Exclusive upper bound; None = MAXVALUE (or DEFAULT).
      is_default(bool): The DEFAULT partition.
      detach_pending(bool): A DETACH ... CONCURRENTLY was interrupted between its two transactions.
      total_bytes(int): Size on disk, indexes and TOAST included.
    """

    name: str
    range_start: datetime.datetime | None
    range_end: datetime.datetime | None
    is_default: bool
    detach_pending: bool
    total_bytes: int

    @property
    def month(self) -> Month | None:
        """The calendar month these bounds are exactly, or None for irregular bounds."""
        if self.range_start is None or self.range_end is None:
            return None
        month = Month.from_start(self.range_start)
        return month if month is not None and month.end == self.range_end else None

    def overlaps(self, month: Month) -> bool:
        if self.is_default:
            return False
        starts_before_end = self.range_start is None or self.range_start < month.end
        ends_after_start = self.range_end is None or self.range_end > month.start
        return starts_before_end and ends_after_start

    def wholly_before(self, moment: datetime.datetime) -> bool:
        """True when every value this partition can hold is earlier than ``moment``."""
        return not self.is_default and self.range_end is not None and self.range_end <= moment


def list_partitions(conn) -> list[Partition]:
    """Every partition of audit_log, ordered by lower bound, with bounds read from pg_class.relpartbound."""
    with conn.cursor() as cur:
        cur.execute(load_sql("crmtasks.audit", "partitions"))
        return [Partition(*row) for row in cur.fetchall()]


def table_exists(conn, name: str) -> bool:
    """True when a relation called ``name`` exists in the current schema search path."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (sql.Identifier(name).as_string(conn),))
        return cur.fetchone()[0]


def ensure_partition(conn, month: Month) -> bool:
    """Make sure ``month`` has a partition; return True when this call created it.

    Runs in the caller's transaction (it does not commit) and takes a
    transaction-level advisory lock so concurrent callers create a month
    once. Idempotent. Raises PartitionConflict when a partition with other
    bounds overlaps the month, or a table already has the month's name
    without being its partition (e.g. a month detached for archiving).
    """
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (AdvisoryLock.AUDIT_PARTITION_DDL.key,))
    existing = list_partitions(conn)
    if any(part.month == month for part in existing):
        return False
    overlapping = [part.name for part in existing if part.overlaps(month)]
    if overlapping:
        raise PartitionConflict(f"month {month} overlaps existing partition(s) {', '.join(overlapping)}")
    if table_exists(conn, month.partition_name):
        raise PartitionConflict(
            f"table {month.partition_name} exists but is not attached to {PARENT_TABLE} "
            "(detached for archiving or left by a restore?); see `crmtasks audit status`"
        )
    name = sql.Identifier(month.partition_name)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(
            name, sql.Identifier(PARENT_TABLE)))
        cur.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
            sql.Identifier(PARENT_TABLE), name, sql.Literal(month.start), sql.Literal(month.end)))
    return True


def create_months(conn, months: list[Month]) -> list[Month]:
    """Create each missing month in its own committed transaction; return the months created.

    Idempotent; a kill leaves every month either fully created or absent.
    """
    created = []
    for month in months:
        with transaction(conn):
            if ensure_partition(conn, month):
                created.append(month)
    return created


def parent_columns(conn, table: str = "audit_log") -> list[str]:
    """The live columns of ``table`` in their physical order, from pg_attribute."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped "
            "ORDER BY attnum", (table,))
        return [row[0] for row in cur.fetchall()]
