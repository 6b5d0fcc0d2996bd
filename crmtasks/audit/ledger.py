"""The retention ledger (table ``audit_retention_ledger``): one row per month retention has worked on.

It is the intent log of the per-month state machine

    detaching -> detached -> archived -> dropped     (policy archive)
    detaching -> detached -> dropped                 (policy delete)
    restored                                         (`crmtasks audit restore`)

Each state is written before the work of the next step starts, so a re-run
after kill -9 knows which month, which table and which catalog bounds it was
working on; where the work really stands is then read from the catalog
(attached? detach pending? table still there?) and the archive directory.
"""

from __future__ import annotations

import dataclasses
import datetime

from crmtasks.audit.months import Month

UNFINISHED = ("detaching", "detached", "archived")
_COLUMNS = ("month", "partition_name", "range_start", "range_end", "policy", "state", "row_count", "min_id",
            "max_id", "data_file", "file_sha256", "rows_checksum", "file_bytes", "updated_at")


@dataclasses.dataclass(frozen=True)
class LedgerRow:
    """One month's retention state (columns of audit_retention_ledger)."""

    month: datetime.date
    partition_name: str
    range_start: datetime.datetime
    range_end: datetime.datetime
    policy: str
    state: str
    row_count: int | None = None
    min_id: int | None = None
    max_id: int | None = None
    data_file: str | None = None
    file_sha256: str | None = None
    rows_checksum: str | None = None
    file_bytes: int | None = None
    updated_at: datetime.datetime | None = None

    @property
    def calendar_month(self) -> Month:
        return Month.of(self.month)


def begin(cur, month: Month, partition_name: str, range_start, range_end, policy: str) -> None:
    """Record that retention starts on ``month`` (state detaching); replaces a finished row of the same month."""
    cur.execute(
        """
        INSERT INTO audit_retention_ledger (month, partition_name, range_start, range_end, policy, state)
        VALUES (%s, %s, %s, %s, %s, 'detaching')
        ON CONFLICT (month) DO UPDATE
           SET partition_name = EXCLUDED.partition_name, range_start = EXCLUDED.range_start,
               range_end = EXCLUDED.range_end, policy = EXCLUDED.policy, state = 'detaching',
               row_count = NULL, min_id = NULL, max_id = NULL, data_file = NULL, file_sha256 = NULL,
               rows_checksum = NULL, file_bytes = NULL, updated_at = now()
        """,
        (month.first_day, partition_name, range_start, range_end, policy),
    )


def set_state(cur, month: Month, state: str, **values) -> None:
    """Move ``month`` to ``state``, setting any other columns given."""
    unknown = set(values) - set(_COLUMNS)
    if unknown:
        raise ValueError(f"no ledger column(s) {', '.join(sorted(unknown))}")
    assignments = ["state = %s", "updated_at = now()"] + [f"{name} = %s" for name in values]
    params = [state, *values.values(), month.first_day]
    cur.execute(f"UPDATE audit_retention_ledger SET {', '.join(assignments)} WHERE month = %s", params)


def rows(cur, states: tuple[str, ...] | None = None) -> list[LedgerRow]:
    """Ledger rows, oldest month first, optionally only those in ``states``."""
    query = f"SELECT {', '.join(_COLUMNS)} FROM audit_retention_ledger"
    params: tuple = ()
    if states:
        query += " WHERE state = ANY(%s)"
        params = (list(states),)
    cur.execute(query + " ORDER BY month", params)
    return [LedgerRow(*row) for row in cur.fetchall()]


def with_archive(cur) -> list[LedgerRow]:
    """The months whose rows the ledger says are in an archive: state 'archived' or 'dropped' after an archive.

    ``data_file`` is set only when a verified archive was recorded (``begin``
    clears it), so a month dropped under the delete policy is not among them,
    nor one whose archive was never finished. A restored month is not either:
    its rows are back in audit_log.
    """
    return [row for row in rows(cur, ("archived", "dropped")) if row.data_file is not None]


def get(cur, month: Month) -> LedgerRow | None:
    cur.execute(f"SELECT {', '.join(_COLUMNS)} FROM audit_retention_ledger WHERE month = %s",
                (month.first_day,))
    row = cur.fetchone()
    return LedgerRow(*row) if row else None


def mark_restored(cur, month: Month, partition_name: str, range_start, range_end, row_count: int,
                  min_id: int | None, max_id: int | None) -> None:
    """Record that ``month`` was re-attached from its archive (the archive itself stays in place)."""
    cur.execute(
        """
        INSERT INTO audit_retention_ledger (month, partition_name, range_start, range_end, policy, state,
                                            row_count, min_id, max_id)
        VALUES (%s, %s, %s, %s, 'archive', 'restored', %s, %s, %s)
        ON CONFLICT (month) DO UPDATE
           SET partition_name = EXCLUDED.partition_name, range_start = EXCLUDED.range_start,
               range_end = EXCLUDED.range_end, state = 'restored', row_count = EXCLUDED.row_count,
               min_id = EXCLUDED.min_id, max_id = EXCLUDED.max_id, updated_at = now()
        """,
        (month.first_day, partition_name, range_start, range_end, row_count, min_id, max_id),
    )
