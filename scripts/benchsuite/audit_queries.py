"""Audit query suite: the log's everyday questions on the partitioned audit_log vs the same rows unpartitioned.

The seed promises "optimized audit log query performance". The baseline is
what a team without partitions would have: ``audit_log_flat``, a plain table
holding the same rows in the same (time) order, with the same indexes as
audit_log: the primary key, (entity, entity_id, occurred_at),
(actor_id, occurred_at) and the BRIN on occurred_at. Both are vacuumed and
analyzed; each question is asked of both sides in turn (interleaved), every
answer fetched into Python the same way, and checked equal.

Questions (issue 14, point 3):
  (a) all activity of the last 24 hours and of the last 7 days (every column);
  (b) the history of one record over 30 days and over all time
      (``crmtasks.audit.history`` vs the same statement on the flat table);
  (c) rows per month and entity over the last 12 months
      (``crmtasks.audit.month_counts`` vs one GROUP BY on the flat table).
Targets: (a) and (c) >= 80% less time; (b) no slower.
"""

from __future__ import annotations

import datetime

from psycopg2 import sql

from benchsuite.rows import Row
from benchsuite.timing import interleaved, summary
from crmtasks.audit import history, month_counts
from crmtasks.audit.log import COLUMNS
from crmtasks.audit.month_counts import count_past_months
from crmtasks.audit.months import current_month
from crmtasks.audit.partition_indexes import index_partitions

FLAT = "audit_log_flat"
TARGET_CUT = 0.80
RECORDS = 20  # distinct records whose history is read, in turn

_COPY_FLAT = [
    "DROP TABLE IF EXISTS audit_log_flat",
    "CREATE TABLE audit_log_flat (LIKE audit_log INCLUDING DEFAULTS)",
    "INSERT INTO audit_log_flat SELECT * FROM audit_log ORDER BY occurred_at, id",
    "ALTER TABLE audit_log_flat ADD PRIMARY KEY (id, occurred_at)",
    "CREATE INDEX ON audit_log_flat (entity, entity_id, occurred_at)",
    "CREATE INDEX ON audit_log_flat (actor_id, occurred_at)",
    "CREATE INDEX ON audit_log_flat USING brin (occurred_at)",
    "VACUUM (FREEZE, ANALYZE) audit_log_flat",
    "VACUUM (FREEZE, ANALYZE) audit_log",
]


def prepare(conn) -> dict:
    """Copy audit_log into the flat table, then run our maintenance steps (partition indexes, past months' counts)."""
    for statement in _COPY_FLAT:
        with conn.cursor() as cur:
            cur.execute(statement)
    indexed = index_partitions(conn)
    counted = count_past_months(conn, current_month())
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM audit_log_flat")
        rows = cur.fetchone()[0]
    return {"rows": rows, "partition_indexes_built": indexed, "months_counted": counted}


def _since_rows(table: str, since: datetime.datetime) -> sql.Composable:
    return sql.SQL("SELECT {columns} FROM {table} WHERE occurred_at >= {since} ORDER BY occurred_at, id").format(
        columns=sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), table=sql.Identifier(table),
        since=sql.Literal(since))


def _fetch(conn, statement) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(statement)
        return cur.fetchall()


def _activity(conn, hours: int, repeat: int) -> tuple[dict, int]:
    since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=hours)
    ours, flat = _since_rows("audit_log", since), _since_rows(FLAT, since)
    matched = len(_fetch(conn, ours))
    if _fetch(conn, ours) != _fetch(conn, flat):
        raise RuntimeError(f"activity of the last {hours} h differs between audit_log and {FLAT}")
    samples = interleaved({"flat": lambda _: _fetch(conn, flat), "ours": lambda _: _fetch(conn, ours)},
                          [None], repeat)
    return samples, matched


def _busiest_records(conn) -> list[tuple[str, int]]:
    with conn.cursor() as cur:
        cur.execute("SELECT entity, entity_id FROM audit_log WHERE occurred_at >= now() - interval '30 days' "
                    "AND entity <> 'user' GROUP BY 1, 2 ORDER BY count(*) DESC, 1, 2 LIMIT %s", (RECORDS,))
        return cur.fetchall()


def _history_flat(conn, entity: str, entity_id: int, since) -> list[tuple]:
    conditions = [sql.SQL("entity = {}").format(sql.Literal(entity)),
                  sql.SQL("entity_id = {}").format(sql.Literal(entity_id))]
    if since is not None:
        conditions.append(sql.SQL("occurred_at >= {}").format(sql.Literal(since)))
    return _fetch(conn, sql.SQL("SELECT {columns} FROM {table} WHERE {where} ORDER BY occurred_at, id").format(
        columns=sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), table=sql.Identifier(FLAT),
        where=sql.SQL(" AND ").join(conditions)))


def _history(conn, days: int | None, repeat: int) -> tuple[dict, float]:
    since = None if days is None else datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=days)
    records = _busiest_records(conn)
    first = records[0]
    if [tuple(vars(e)[c] for c in COLUMNS) for e in history(*first, since, connection=conn)] \
            != _history_flat(conn, *first, since):
        raise RuntimeError(f"history of {first} differs between audit_log and {FLAT}")
    rows = sum(len(_history_flat(conn, *record, since)) for record in records) / len(records)
    samples = interleaved({"flat": lambda record: _history_flat(conn, *record, since),
                           "ours": lambda record: history(*record, since, connection=conn)}, records, repeat)
    return samples, rows


def _counts_flat(conn, since) -> list[tuple]:
    return _fetch(conn, sql.SQL(
        "SELECT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date, entity, count(*) FROM {} "
        "WHERE occurred_at >= {} GROUP BY 1, 2").format(sql.Identifier(FLAT), sql.Literal(since)))


def _counts(conn, repeat: int) -> tuple[dict, int]:
    since = current_month().plus(-11).start
    ours = [(c.month, c.entity, c.rows) for c in month_counts(12, connection=conn)]
    if ours != sorted(_counts_flat(conn, since)):
        raise RuntimeError(f"month counts differ between month_counts and a GROUP BY on {FLAT}")
    samples = interleaved({"flat": lambda _: _counts_flat(conn, since),
                           "ours": lambda _: month_counts(12, connection=conn)}, [None], repeat)
    return samples, sum(row[2] for row in ours)


def _row(metric: str, samples: dict, detail: str, *, no_slower: bool = False) -> Row:
    flat, ours = summary(samples["flat"]), summary(samples["ours"])
    if no_slower:
        target, limit = "no slower than unpartitioned (p95)", 1.0
    else:
        target, limit = f">= {TARGET_CUT:.0%} less than unpartitioned (p95)", 1 - TARGET_CUT
    return Row(suite="audit", metric=f"{metric}, p95: unpartitioned vs partitioned", unit="ms",
               baseline=flat["p95"], ours=ours["p95"], target=target, met=ours["p95"] <= limit * flat["p95"],
               target_ratio=limit,
               detail=f"p50 {flat['p50']:.2f} vs {ours['p50']:.2f} ms; {detail}; {len(samples['ours'])} calls a side")


def run(conn, repeat: int) -> tuple[list[Row], dict]:
    """Build the flat copy, ask each question of both sides in turn; return (rows, raw figures)."""
    prepared = prepare(conn)
    raw: dict = {"prepared": prepared}
    rows = []
    for hours, label in ((24, "(a) activity of the last 24 hours"), (24 * 7, "(a) activity of the last 7 days")):
        samples, matched = _activity(conn, hours, max(5, repeat // 4))
        raw[label] = {side: summary(values) for side, values in samples.items()} | {"rows": matched}
        rows.append(_row(label, samples, f"{matched:,} rows, every column, fetched into Python"))
    for days, label in ((30, "(b) history of one record, 30 days"), (None, "(b) history of one record, all time")):
        samples, average = _history(conn, days, repeat)
        raw[label] = {side: summary(values) for side, values in samples.items()} | {"rows": average}
        rows.append(_row(label, samples, f"{RECORDS} busiest records in turn, {average:.0f} rows each on average; "
                                         "ours: crmtasks.audit.history", no_slower=True))
    samples, total = _counts(conn, max(5, repeat // 4))
    label = "(c) rows per month and entity, last 12 months"
    raw[label] = {side: summary(values) for side, values in samples.items()} | {"rows": total}
    rows.append(_row(label, samples, f"{total:,} rows counted; ours: crmtasks.audit.month_counts (past months "
                                     "kept by the daily maintenance, the current month live)"))
    with conn.cursor() as cur:
        cur.execute("DROP TABLE audit_log_flat")
    return rows, raw


def verdict(audit_rows: list[Row]) -> Row:
    """The seed's "Audit Logs: optimized storage and query performance", from the storage row and the query rows.

    Figures: the least improved query (the highest ratio against its
    target's limit); met only when every query row and the storage row are.
    """
    queries = [row for row in audit_rows if row.metric.startswith("(")]
    storage = [row for row in audit_rows if row.metric.startswith("storage")]
    worst = max(queries, key=lambda row: (row.ratio or 0.0) / (row.target_ratio or 1.0))
    met = all(row.met for row in queries + storage) if queries and storage else None
    stored = (f"storage {storage[0].ours:.0f} vs {storage[0].baseline:.0f} bytes/row in the table"
              if storage and storage[0].ours is not None else "storage not measured")
    return Row(suite="audit", claim="audit", metric=f"least improved query: {worst.metric}", unit="ms",
               baseline=worst.baseline, ours=worst.ours, target="every query row's target met, and storage smaller",
               met=met, target_ratio=worst.target_ratio,
               detail=f"{stored}; {sum(bool(row.met) for row in queries)} of {len(queries)} query rows met")
