"""Keeping the report aggregates current: what ``analytics.precompute_aggregates`` does.

The aggregate tables (migration 0003) hold sums and counts per period and
owner. Triggers on deals, leads and accounts append the old (-1) and new (+1)
image of every row whose reported columns change to a change log (and a
user's id when its name or active flag changes). A run folds the log into
the aggregates by adding each group's deltas (and deletes the groups that
emptied), so its cost follows the rows changed since the last run, not the
size of the CRM; that work, and publishing ``as_of``, is one statement
(``crmtasks.reports.fold``), after one for owners' new names if any. A full rebuild (first run, after a TRUNCATE, or every
``rebuild_after_hours``) recomputes everything from the raw tables with the
same SQL, reading every row as a +1 image.

Guarantees:

- Atomic publish: one REPEATABLE READ transaction consumes the log, updates
  the aggregates and stamps ``as_of``; readers see the whole old or the whole
  new state, and are never blocked (row locks only).
- Nothing is lost or counted twice: the run deletes exactly the log rows
  visible in its snapshot, the ones it folded; changes committed after the
  snapshot stay in the log for the next run. No watermark or clock is trusted.
- ``as_of`` is the start of the run's first statement: every change committed
  before it is in the aggregates (some committed a moment later may be too).
- Idempotent and safe to kill: an interrupted run rolls back and leaves the
  log in place. Two runs never interleave: a transaction advisory lock,
  taken by the run's first query, makes a second concurrent run return at
  once (``skipped``). That query takes the snapshot before the lock, so a
  run that published in between leaves it a stale snapshot: locking the
  state row FOR UPDATE then fails with a serialization error before
  anything is folded (never the same changes folded twice), and the run
  starts again once with a fresh snapshot.
- Three round trips when only changes are folded (BEGIN with the lock and the
  state; the fold, a statement prepared once per connection; COMMIT), one
  more when owners were renamed.
- May block writers? No: writers only append to the log.
"""

from __future__ import annotations

import dataclasses
import datetime
import time

import psycopg2.errors
from psycopg2 import sql
from psycopg2.extensions import connection as PgConnection

from crmtasks.pg import AdvisoryLock, load_sql, transaction
from crmtasks.reports import fold, payloads

# Memory for the fold's hash aggregates and sorts (PostgreSQL's default 4MB spills to disk on a rebuild).
_WORK_MEM = "128MB"

AGGREGATE_TABLES = tuple(fold.TABLES)

# Logs consumed by a full rebuild without folding (the raw tables it reads already hold their effects).
_LOGS = tuple(spec["log"] for spec in fold.SOURCES.values()) + ("report_owner_changes",)


@dataclasses.dataclass
class RefreshStats:
    """What one run did; ``as_dict()`` is what lands in ``task_runs.stats``.

    Parameters:
      mode(str): ``incremental``, ``full`` or ``skipped`` (another run held the lock).
      reason(str): Why this mode (``changes``, ``first run``, ``rebuild required``, ``periodic rebuild``...).
      as_of(datetime|None): The published as_of.
      rows_read(dict): Rows read per source: change-log images (incremental) or raw rows (full).
      aggregate_rows_written(int): Aggregate rows inserted or updated.
      aggregate_rows_removed(int): Aggregate rows deleted: groups that emptied, or all rows on a full rebuild.
      owners_refreshed(int): Owners whose new name or active flag was copied into their rows.
      months_touched(list[str]): Months (YYYY-MM) whose deal or lead aggregates changed.
      duration_ms(float): Wall-clock milliseconds, BEGIN to COMMIT (retry included).
    """

    mode: str
    reason: str
    as_of: datetime.datetime | None = None
    rows_read: dict = dataclasses.field(default_factory=dict)
    aggregate_rows_written: int = 0
    aggregate_rows_removed: int = 0
    owners_refreshed: int = 0
    months_touched: list = dataclasses.field(default_factory=list)
    duration_ms: float = 0.0
    previous_as_of: datetime.datetime | None = None

    def unchanged_sources(self) -> list[str]:
        """The sources whose aggregates this run left as they were (none after a rebuild, or when owners' names
        changed: every per-owner row may carry them)."""
        if self.mode != "incremental" or self.owners_refreshed:
            return []
        return [name for name in fold.SOURCES if not self.rows_read.get(name)]

    def as_dict(self) -> dict:
        return {
            "mode": self.mode,
            "reason": self.reason,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "rows_read": dict(self.rows_read),
            "rows_read_total": sum(self.rows_read.values()),
            "aggregate_rows_written": self.aggregate_rows_written,
            "aggregate_rows_removed": self.aggregate_rows_removed,
            "owners_refreshed": self.owners_refreshed,
            "months_touched": len(self.months_touched),
            "months_touched_list": list(self.months_touched),
            "duration_ms": round(self.duration_ms, 1),
        }


def refresh(conn: PgConnection, *, full: bool = False, rebuild_after_hours: int = 0,
            statement_timeout_s: int = 0) -> RefreshStats:
    """Bring the aggregates up to date in one transaction and return what was done.

    Parameters:
      conn(connection): A psycopg2 connection in autocommit mode with no open
        transaction (peewee's connections are); this function sends BEGIN/COMMIT.
      full(bool): Rebuild everything from the raw tables even if the log would do.
      rebuild_after_hours(int): Also rebuild when the last full rebuild is older
        than this many hours (a safety net against changes that bypassed the
        triggers, e.g. loads with triggers disabled); 0 never does.
      statement_timeout_s(int): PostgreSQL statement_timeout for the run, in
        seconds (a worker's time limit cannot interrupt a running statement); 0 = none.
    """
    if not conn.autocommit:
        raise ValueError("refresh() needs a connection in autocommit mode: it manages its own transaction")
    started = time.perf_counter()
    try:
        stats = _run(conn, full=full, rebuild_after_hours=rebuild_after_hours, statement_timeout_s=statement_timeout_s)
    except psycopg2.errors.SerializationFailure:
        # The snapshot is taken by the statement that takes the lock, so a run that published (and let go of the
        # lock) in between leaves this one a stale snapshot: the state row it locks has changed since, and
        # PostgreSQL refuses it before anything is folded. Again with a fresh snapshot.
        stats = _run(conn, full=full, rebuild_after_hours=rebuild_after_hours, statement_timeout_s=statement_timeout_s)
    stats.duration_ms = (time.perf_counter() - started) * 1000
    return stats


def _run(conn: PgConnection, *, full: bool, rebuild_after_hours: int, statement_timeout_s: int) -> RefreshStats:
    """One attempt: three round trips when the run folds changes (BEGIN with the lock and the state, the fold,
    COMMIT); the transaction-scoped lock ends with the transaction, kill -9 included."""
    first = (_FIRST_QUERY, (fold.PREPARED_PREFIX, AdvisoryLock.AGGREGATES_REFRESH.key))
    with transaction(conn, repeatable_read=True, local=_settings(statement_timeout_s), first=first) as cur:
        found = cur.fetchone()
        if found is None:
            return RefreshStats(mode="skipped", reason="another precompute_aggregates run holds the lock")
        return _refresh_in_transaction(cur, found, full=full, rebuild_after_hours=rebuild_after_hours)


# The run's first query, sent with its BEGIN: it takes the snapshot (statement_timestamp() was fixed just before, so
# every commit earlier than as_of is visible to this run), then the lock (transaction-scoped: no unlock to send, and
# no row of the state when another run holds it), the state row FOR UPDATE (should two runs ever overlap, the second
# fails with a serialization error instead of folding the same changes twice), which logs hold rows in this snapshot
# (a run skips the statements of the empty ones) and which fold statements this connection has prepared.
_FIRST_QUERY = """
    SELECT statement_timestamp(), as_of, rebuild_required, last_rebuild_at,
           EXISTS (SELECT FROM report_deal_changes), EXISTS (SELECT FROM report_lead_changes),
           EXISTS (SELECT FROM report_account_changes), EXISTS (SELECT FROM report_owner_changes),
           ARRAY(SELECT name FROM pg_prepared_statements WHERE starts_with(name, %s))
    FROM report_aggregate_state
    WHERE pg_try_advisory_xact_lock(%s)
    FOR UPDATE
"""


def _settings(statement_timeout_s: int) -> dict:
    """SET LOCAL for the run, sent with its BEGIN.

    synchronous_commit off: the run's COMMIT does not wait for its WAL to
    reach the disk. A crash of the server in that instant loses the whole
    run (aggregates, consumed log rows and as_of together: a commit is still
    atomic), never part of it, and the next run folds the same changes again.

    jit off: the run's statement is estimated costly (every branch of the
    emptied-group lookups counted for every changed group), so PostgreSQL
    would compile it to machine code first, for seconds, to save
    microseconds.

    plan_cache_mode force_generic_plan: the prepared fold is planned once,
    on its first run on the connection, not on each of its first five (its
    one parameter, as_of, is only written, never searched).
    """
    settings = {"work_mem": _WORK_MEM, "synchronous_commit": "off", "jit": "off",
                "plan_cache_mode": "force_generic_plan"}
    if statement_timeout_s:
        settings["statement_timeout"] = f"{int(statement_timeout_s)}s"
    return settings


def _refresh_in_transaction(cur, found: tuple, *, full: bool, rebuild_after_hours: int) -> RefreshStats:
    as_of, previous_as_of, rebuild_required, last_rebuild_at, *waiting, prepared = found
    pending = dict(zip((*fold.SOURCES, "owners"), waiting))
    reason = _rebuild_reason(full, previous_as_of, rebuild_required, last_rebuild_at, as_of, rebuild_after_hours)
    stats = RefreshStats(mode="full" if reason else "incremental", reason=reason or "changes", as_of=as_of,
                         previous_as_of=previous_as_of)

    if reason:
        for log in _LOGS:
            # Only the log rows this snapshot sees: the raw tables it reads already include them.
            cur.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(log)))
        for table in AGGREGATE_TABLES:
            cur.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
            stats.aggregate_rows_removed += cur.rowcount
    elif pending["owners"]:
        cur.execute(load_sql("crmtasks.reports", "refresh_owners"))
        stats.owners_refreshed, rows_written = cur.fetchone()
        stats.aggregate_rows_written += int(rows_written)

    # The rest of the run is one statement (crmtasks.reports.fold): the sources with changes waiting (all of them
    # on a rebuild) folded into the aggregates, and as_of published.
    # No ANALYZE after a full rebuild (it cost a quarter of one): every read is a scan of one leaf partition in
    # key order, whose plan does not hinge on statistics, and autovacuum analyzes the rewritten leaves anyway.
    sources = [name for name in fold.SOURCES if reason or pending[name]]
    if reason or not sources:  # a rebuild (rare), or nothing to fold but as_of to publish
        cur.execute(fold.run_statement(sources, full=bool(reason)), {"as_of": as_of})
    else:
        _execute_prepared(cur, sources, as_of, prepared)
    rows_read, rows_written, rows_removed, months = cur.fetchone()
    stats.rows_read = {name: int(rows_read.get(name, 0)) for name in fold.SOURCES}
    stats.aggregate_rows_written += int(rows_written)
    stats.aggregate_rows_removed += int(rows_removed)
    stats.months_touched = [month.strftime("%Y-%m") for month in months or ()]
    return stats


def _execute_prepared(cur, sources: list[str], as_of, prepared: list[str]) -> None:
    """Run the incremental fold of ``sources`` as a prepared statement: PREPARE it in the same round trip the
    first time this connection folds these sources (a prepared statement outlives the transaction, even one
    rolled back), EXECUTE it from then on."""
    name = fold.prepared_name(sources)
    execute = sql.SQL("EXECUTE {} (%s)").format(sql.Identifier(name))
    if name not in prepared:
        text = _prepare_text(tuple(sources), cur.connection)
        execute = sql.SQL(text.replace("%", "%%") + "; ") + execute
    cur.execute(execute, (as_of,))


_PREPARE_TEXTS: dict[tuple[str, ...], str] = {}


def _prepare_text(sources: tuple[str, ...], conn) -> str:
    """The PREPARE of ``sources``' fold as text, composed once per process (it is the same on every connection)."""
    text = _PREPARE_TEXTS.get(sources)
    if text is None:
        text = _PREPARE_TEXTS[sources] = fold.prepare_statement(list(sources)).as_string(conn)
    return text


def _rebuild_reason(full, previous_as_of, rebuild_required, last_rebuild_at, now, rebuild_after_hours) -> str | None:
    if full:
        return "full rebuild requested"
    if previous_as_of is None:
        return "first run"
    if rebuild_required:
        return "rebuild required (a CRM table was truncated)"
    if rebuild_after_hours and (last_rebuild_at is None
                                or now - last_rebuild_at >= datetime.timedelta(hours=rebuild_after_hours)):
        return f"periodic rebuild (every {rebuild_after_hours} h)"
    return None


def vacuum_consumed_logs(conn: PgConnection, stats: RefreshStats) -> list[str]:
    """VACUUM the change logs a run consumed; returns their names. Run after the run, outside any transaction.

    A run deletes its log rows; until they are vacuumed every later run's
    scans of the log (its first query, the fold) wade through the dead ones,
    and the log only grows. Autovacuum gets to them eventually, or never
    where it is off or behind; this costs a few pages per run. TRUNCATE false:
    no exclusive lock, so writers appending to the log never wait (the freed
    pages are reused instead of given back). A log the role does not own is
    skipped by PostgreSQL with a warning.
    """
    if stats.mode == "skipped":
        return []
    logs = [spec["log"] for name, spec in fold.SOURCES.items() if stats.mode == "full" or stats.rows_read.get(name)]
    if stats.mode == "full" or stats.owners_refreshed:
        logs.append("report_owner_changes")
    if logs:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("VACUUM (TRUNCATE false) {}").format(sql.SQL(", ").join(map(sql.Identifier, logs))))
    return logs


def tidy_up(conn: PgConnection, stats: RefreshStats) -> dict:
    """What the job does after a run has published, outside its transaction: carry the row payloads of the
    reports the run did not touch to its generation, delete the other payloads of earlier generations (never
    served again), vacuum the change logs the run emptied; what each cost. The reports bench times it too, apart
    from the run. A kill before the end leaves old payloads for the next run to delete (never served meanwhile)."""
    result = {}
    if stats.as_of is not None:
        started = time.perf_counter()
        result["payloads_carried"] = payloads.carry_forward(conn, stats.previous_as_of, stats.as_of,
                                                            stats.unchanged_sources())
        result["payloads_deleted"] = payloads.forget_older(conn, stats.as_of)
        result["payloads_delete_ms"] = round((time.perf_counter() - started) * 1000, 1)
    started = time.perf_counter()
    result["logs_vacuumed"] = vacuum_consumed_logs(conn, stats)
    result["logs_vacuum_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def state(conn: PgConnection) -> dict:
    """The published state: as_of, rebuild_required, last_rebuild_at, and change-log rows waiting."""
    with conn.cursor() as cur:
        cur.execute("""
            SELECT as_of, rebuild_required, last_rebuild_at,
                   (SELECT count(*) FROM report_deal_changes) + (SELECT count(*) FROM report_lead_changes)
                   + (SELECT count(*) FROM report_account_changes) + (SELECT count(*) FROM report_owner_changes)
            FROM report_aggregate_state
        """)
        as_of, rebuild_required, last_rebuild_at, pending = cur.fetchone()
    return {"as_of": as_of, "rebuild_required": rebuild_required, "last_rebuild_at": last_rebuild_at,
            "pending_changes": pending}
