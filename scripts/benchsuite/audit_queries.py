"""Audit query suite: the log's everyday questions on the partitioned audit_log vs the same rows unpartitioned.

The seed promises "optimized audit log query performance". The baseline is
what a team without partitions would have: ``audit_log_flat``, a plain table
holding the same rows in the same (time) order, with the same indexes as
audit_log (copied from the catalog): the primary key, (entity, entity_id,
occurred_at), (actor_id, occurred_at) and the BRIN on occurred_at. Both are vacuumed and
analyzed; each question is asked of both sides in turn (interleaved), every
answer fetched into Python the same way, and checked equal.

Questions (issue 14, point 3):
  (a) all activity of the last 24 hours and of the last 7 days (every column):
      the baseline is the most direct statement on the flat table fetched
      with ``fetchall``, with the same sort memory as ours; ours is the product API, ``crmtasks.audit.activity``
      (pruned to the months of the window, read through COPY into rows
      decoded when read). Two explanatory sides, timed in the same rounds:
      the flat table read through the same path as ours (so partitioning's
      share and the read path's share can be told apart) and ours with every
      cell decoded (what a caller that reads every cell pays);
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
from crmtasks.audit import activity, history, month_counts
from crmtasks.audit.activity import SORT_MEMORY, activity_statement, read_activity
from crmtasks.audit.log import COLUMNS, HISTORY_PLANNING
from crmtasks.audit.month_counts import count_past_months
from crmtasks.audit.months import current_month
from crmtasks.audit.index_retirement import retire_replaced_indexes
from crmtasks.audit.partition_indexes import index_partitions

FLAT = "audit_log_flat"
TARGET_CUT = 0.80
RECORDS = 20  # distinct records whose history is read, in turn

_COPY_FLAT = [
    "DROP TABLE IF EXISTS audit_log_flat",
    "CREATE TABLE audit_log_flat (LIKE audit_log INCLUDING DEFAULTS)",
    "INSERT INTO audit_log_flat SELECT * FROM audit_log ORDER BY occurred_at, id",
    "ALTER TABLE audit_log_flat ADD PRIMARY KEY (id, occurred_at)",
]
_VACUUM = ["VACUUM (FREEZE, ANALYZE) audit_log_flat", "VACUUM (FREEZE, ANALYZE) audit_log"]
# audit_log's own indexes other than its primary key, as "method (key) [WITH (...)]" from PostgreSQL's rendering.
_PARENT_INDEXES = """
SELECT substring(pg_get_indexdef(i.indexrelid) FROM ' USING (.*)$')
FROM pg_index i
WHERE i.indrelid = 'audit_log'::regclass AND NOT i.indisprimary
ORDER BY i.indexrelid
"""


def prepare(conn) -> dict:
    """Run our maintenance steps (partition indexes, retired indexes, past months' counts), then copy audit_log
    into the flat table with the same indexes as audit_log has then (read from the catalog, so an index added or
    retired by a migration is mirrored without a second list here)."""
    indexed = index_partitions(conn)
    retired = retire_replaced_indexes(conn)
    for statement in _COPY_FLAT:
        with conn.cursor() as cur:
            cur.execute(statement)
    with conn.cursor() as cur:
        cur.execute(_PARENT_INDEXES)
        definitions = [row[0] for row in cur.fetchall()]
    for definition in definitions:  # PostgreSQL's own rendering of audit_log's index, not input
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE INDEX ON {} USING {}").format(sql.Identifier(FLAT), sql.SQL(definition)))
    for statement in _VACUUM:
        with conn.cursor() as cur:
            cur.execute(statement)
    counted = count_past_months(conn, current_month())
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM audit_log_flat")
        rows = cur.fetchone()[0]
    return {"rows": rows, "partition_indexes_built": indexed, "indexes_retired": retired, "months_counted": counted,
            "indexes": definitions}


def _since_rows(table: str, since: datetime.datetime) -> sql.Composable:
    """The direct SELECT of a window, with the sort memory ``activity`` gives its own read (SET LOCAL, same round
    trip): without it a week's sort spills to disk on the flat side only, which is not the same work."""
    return sql.SQL("SET LOCAL work_mem = {memory}; SELECT {columns} FROM {table} WHERE occurred_at >= {since} "
                   "ORDER BY occurred_at, id").format(
        memory=sql.Literal(SORT_MEMORY), columns=sql.SQL(", ").join(map(sql.Identifier, COLUMNS)),
        table=sql.Identifier(table), since=sql.Literal(since))


def _fetch(conn, statement) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(statement)
        return cur.fetchall()


def _activity(conn, hours: int, repeat: int) -> tuple[dict, int]:
    """Samples of: flat (fetchall), ours (the API), flat_lazy (flat through our read path), ours_decoded."""
    since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=hours)
    flat = _since_rows(FLAT, since)

    def flat_lazy(_):
        return read_activity(activity_statement(since, table=FLAT), connection=conn)

    expected = _fetch(conn, flat)
    if activity(since, connection=conn).tuples() != expected or flat_lazy(None).tuples() != expected:
        raise RuntimeError(f"activity of the last {hours} h differs between crmtasks.audit.activity and {FLAT}")
    samples = interleaved({"flat": lambda _: _fetch(conn, flat),
                           "ours": lambda _: activity(since, connection=conn),
                           "flat_lazy": flat_lazy,
                           "ours_decoded": lambda _: activity(since, connection=conn).tuples()}, [None], repeat)
    return samples, len(expected)


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


def _history(conn, days: int | None, repeat: int) -> tuple[dict, float, dict]:
    since = None if days is None else datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=days)
    records = _busiest_records(conn)
    first = records[0]
    if [tuple(vars(e)[c] for c in COLUMNS) for e in history(*first, since, connection=conn)] \
            != _history_flat(conn, *first, since):
        raise RuntimeError(f"history of {first} differs between audit_log and {FLAT}")
    rows = sum(len(_history_flat(conn, *record, since)) for record in records) / len(records)
    samples = interleaved({"flat": lambda record: _history_flat(conn, *record, since),
                           "ours": lambda record: history(*record, since, connection=conn)}, records, repeat)
    return samples, rows, _history_server(conn, first, since)


def _history_server(conn, record: tuple[str, int], since) -> dict:
    """Median server time and buffers of one record's history, from EXPLAIN (ANALYZE, BUFFERS): ours as
    ``history`` runs it (its prepared statement, its generic plan without bitmap scans) vs the flat
    table's statement (planning and execution on both sides)."""
    name = "crmtasks_audit_history_00" if since is None else "crmtasks_audit_history_10"
    bounds = () if since is None else (since,)
    planning = "".join(f"SET LOCAL {setting} = {value}; " for setting, value in HISTORY_PLANNING.items())
    ours = sql.SQL(planning + "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE {} ({})").format(
        sql.SQL(name), sql.SQL(", ").join([sql.SQL("%s::text"), sql.SQL("%s::bigint")]
                                          + [sql.SQL("%s::timestamptz")] * len(bounds) + [sql.SQL("NULL::bigint")]))
    flat = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT {} FROM {} WHERE entity = %s AND entity_id = %s{} "
                   "ORDER BY occurred_at, id").format(
        sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), sql.Identifier(FLAT),
        sql.SQL("") if since is None else sql.SQL(" AND occurred_at >= %s"))
    found = {}
    for side, statement in (("ours", ours), ("flat", flat)):
        times, plan = [], None
        for _ in range(21):
            with conn.cursor() as cur:
                cur.execute(statement, (*record, *bounds))
                plan = cur.fetchone()[0][0]
            times.append(plan.get("Planning Time", 0.0) + plan["Execution Time"])
        found[side] = {"server_ms_p50": sorted(times)[len(times) // 2], "buffers": plan["Plan"]["Shared Hit Blocks"]
                       + plan["Plan"].get("Shared Read Blocks", 0)}
    return found


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
        lazy, decoded = summary(samples["flat_lazy"]), summary(samples["ours_decoded"])
        rows.append(_row(label, samples, f"{matched:,} rows, every column; baseline: fetchall of the direct SELECT; "
                                         f"ours: crmtasks.audit.activity (rows decoded when read); the flat table "
                                         f"through our read path p95 {lazy['p95']:.1f} ms (the read path's share); "
                                         f"ours with every cell decoded p95 {decoded['p95']:.1f} ms"))
    for days, label in ((30, "(b) history of one record, 30 days"), (None, "(b) history of one record, all time")):
        samples, average, server = _history(conn, days, repeat)
        raw[label] = {side: summary(values) for side, values in samples.items()} | {"rows": average,
                                                                                     "explain": server}
        rows.append(_row(label, samples, f"{RECORDS} busiest records in turn, {average:.0f} rows each on average; "
                                         "ours: crmtasks.audit.history; server (EXPLAIN ANALYZE, planning + execution, p50 of 21, first "
                                         f"record) {server['flat']['server_ms_p50']:.3f} vs "
                                         f"{server['ours']['server_ms_p50']:.3f} ms, {server['flat']['buffers']} vs "
                                         f"{server['ours']['buffers']} buffers", no_slower=True))
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
