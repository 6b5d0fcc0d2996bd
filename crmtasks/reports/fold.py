"""The one statement of a run of ``analytics.precompute_aggregates``: change images in, aggregates and as_of out.

A run is one data-modifying statement (a chain of CTEs), so its work costs
one round trip whatever it touches. For each source with changes waiting
(deals, leads, accounts), ``sql/fold_<source>.sql`` consumes the change log
(``DELETE ... RETURNING``: exactly the rows the run's snapshot sees) and
groups the old (-1) and new (+1) images in one pass into ``deltas_<table>``:
one row per changed group, per owner and for all owners, with the change of
each sum and count. Then, per aggregate table, only at those groups:

- an upsert adds the deltas to the stored row of each group through the key
  index (a HOT update: the key never changes and no index covers a sum), or
  inserts a new group with its owner's name and flag; its WHERE leaves alone
  a stored row whose counts the deltas bring to zero (every record of the
  group deleted or moved away);
- those left rows (the changed groups the upsert returned nothing for) are
  found again through the key index and deleted by tuple id, in the same
  statement: no second round trip with their keys.

The last CTE publishes ``as_of``. No other writer can race the run (its
advisory lock and the state row locked FOR UPDATE). On a full rebuild the
same grouping reads every raw row as a +1 image and only inserts (the run
has emptied the tables first), in key order, as reads want them.
"""

from __future__ import annotations

import itertools

from psycopg2 import sql

from crmtasks.pg import load_sql

# Each source: its SQL, the CTE of its images, its raw table and columns (read as +1 images on a full
# rebuild; the change log has the same columns), the change log it consumes, and the tables it feeds.
SOURCES = {
    "deals": {
        "images": "deal_images",
        "table": "deals",
        "log": "report_deal_changes",
        "columns": ("owner_id", "stage", "amount", "probability", "close_date", "created_at"),
        "tables": ("report_deal_periods", "report_open_pipeline"),
    },
    "leads": {
        "images": "lead_images",
        "table": "leads",
        "log": "report_lead_changes",
        "columns": ("owner_id", "source", "status", "created_at"),
        "tables": ("report_lead_periods",),
    },
    "accounts": {
        "images": "account_images",
        "table": "accounts",
        "log": "report_account_changes",
        "columns": ("owner_id", "industry", "region"),
        "tables": ("report_account_segments",),
    },
}

# Per aggregate table: its key columns (in key order: a full rebuild writes rows in that order), its additive
# columns (sums and counts), and the counts that are all zero in a group with no record left.
TABLES = {
    "report_deal_periods": {
        "keys": ("period_start", "owner_id", "grain", "all_owners"),
        "sums": ("won_count", "won_amount_sum", "won_amount_count", "won_cycle_days_sum", "lost_count",
                 "lost_cycle_days_sum"),
        "counts": ("won_count", "lost_count"),
    },
    "report_open_pipeline": {
        "keys": ("owner_id", "stage", "all_owners"),
        "sums": ("deal_count", "amount_sum", "amount_count", "amount_probability_sum"),
        "counts": ("deal_count",),
    },
    "report_lead_periods": {
        "keys": ("period_start", "source", "owner_id", "grain", "all_owners"),
        "sums": ("lead_count", "converted_count"),
        "counts": ("lead_count",),
    },
    "report_account_segments": {
        "keys": ("owner_id", "industry", "region", "all_owners"),
        "sums": ("account_count",),
        "counts": ("account_count",),
    },
}

# Nullable key columns: a NULL owner, source, industry or region is a group of its own (the tables' keys are
# UNIQUE NULLS NOT DISTINCT).
_NULLABLE_KEYS = ("owner_id", "source", "industry", "region")

# Tables whose groups are months (the run reports which months it touched).
_MONTHLY = ("report_deal_periods", "report_lead_periods")

_PUBLISH = sql.SQL("""published AS (
    UPDATE report_aggregate_state
    SET as_of = {as_of},
        rebuild_required = CASE WHEN {full} THEN false ELSE rebuild_required END,
        last_rebuild_at = CASE WHEN {full} THEN {as_of} ELSE last_rebuild_at END
    RETURNING 1
)""")

# Prepared incremental statements are named after the sources they fold (a run folds only the logs with rows).
PREPARED_PREFIX = "crmtasks_report_fold_"


def prepared_name(sources: list[str]) -> str:
    """The name of the prepared incremental statement folding ``sources`` (one per set of sources)."""
    return PREPARED_PREFIX + "_".join(sources)


def prepare_statement(sources: list[str]) -> sql.Composed:
    """``PREPARE`` of the incremental run folding ``sources``; its one parameter, ``$1``, is as_of (timestamptz).

    Why prepared: the statement is dozens of CTEs over partitioned tables, and parsing and planning it cost
    about as much as folding a 1% change (tens of milliseconds at 300k deals on a slow machine). A worker runs
    the job on the same connection every time: prepared once, each later run only executes it.
    """
    return sql.SQL("PREPARE {} (timestamptz) AS ").format(sql.Identifier(prepared_name(sources))) + run_statement(
        sources, full=False, as_of=sql.SQL("$1"))


def run_statement(sources: list[str], *, full: bool,
                  as_of: sql.Composable = sql.Placeholder("as_of")) -> sql.Composed:
    """The run's statement: fold ``sources`` (their logs, or their raw tables if ``full``) and publish as_of.

    Parameter ``%(as_of)s`` (timestamptz; or the given ``as_of``). Returns one row: rows read per source
    (json), aggregate rows written, aggregate rows removed, months touched (date[] or NULL).
    """
    ctes, tables = [], []
    for name in sources:
        spec = SOURCES[name]
        ctes.append(sql.SQL(_strip_comments(load_sql("crmtasks.reports", f"fold_{name}"))).format(
            images=_images(spec, full=full)))
        for table in spec["tables"]:
            ctes += [_insert(table, name=f"{table}_inserted")] if full else _merge(table)
            tables.append(table)
    ctes.append(_PUBLISH.format(as_of=as_of, full=sql.Literal(full)))
    return sql.SQL("WITH {ctes}\nSELECT {read}, {written}, {removed}, {months}").format(
        ctes=sql.SQL(",\n").join(ctes),
        read=_rows_read(sources),
        written=_count_sum([f"{table}_{'inserted' if full else 'upserted'}" for table in tables]),
        removed=_count_sum([] if full else [f"{table}_removed" for table in tables]),
        months=_months([table for table in tables if table in _MONTHLY]))


def _strip_comments(text: str) -> str:
    """The fragment without its ``--`` comment lines (a % or a brace in prose would read as a placeholder)."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))


def _images(spec: dict, *, full: bool) -> sql.Composed:
    columns = sql.SQL(", ").join(map(sql.Identifier, spec["columns"]))
    if full:
        return sql.SQL("SELECT 1::smallint AS sign, {} FROM {}").format(columns, sql.Identifier(spec["table"]))
    return sql.SQL("DELETE FROM {} RETURNING sign, {}").format(sql.Identifier(spec["log"]), columns)


def _lookup(table: str) -> sql.Composed:
    """The stored row (tableoid, ctid) of key row ``e``, found through the key index.

    IS NOT DISTINCT FROM cannot use an index: one branch per way the nullable key columns can be NULL, each
    matching them with = or IS NULL (both indexable); exactly one branch can match.
    """
    keys = TABLES[table]["keys"]
    nullable = [column for column in keys if column in _NULLABLE_KEYS]
    branches = []
    for null_columns in itertools.product((False, True), repeat=len(nullable)):
        is_null = dict(zip(nullable, null_columns))
        conditions = [sql.SQL("e.{0} IS NULL AND s.{0} IS NULL" if is_null.get(column) else "s.{0} = e.{0}")
                      .format(sql.Identifier(column)) for column in keys]
        branches.append(sql.SQL("SELECT s.ctid AS stored_row, s.tableoid AS stored_table FROM {} AS s WHERE {}")
                        .format(sql.Identifier(table), sql.SQL(" AND ").join(conditions)))
    return sql.SQL(" UNION ALL ").join(branches)


def _merge(table: str) -> list[sql.Composed]:
    """CTEs adding ``deltas_<table>`` to ``table``: an upsert that leaves the groups it would empty, then the
    deletion of those groups."""
    spec, target = TABLES[table], sql.Identifier(table)
    additions = [sql.SQL("{0} = stored.{0} + excluded.{0}").format(sql.Identifier(column)) for column in spec["sums"]]
    emptied = sql.SQL(" AND ").join(sql.SQL("stored.{0} + excluded.{0} = 0").format(sql.Identifier(column))
                                    for column in spec["counts"])
    keys = sql.SQL(", ").join(map(sql.Identifier, spec["keys"]))
    upsert = sql.SQL("ON CONFLICT ON CONSTRAINT {constraint} DO UPDATE SET owner_name = excluded.owner_name, "
                     "owner_active = excluded.owner_active, {additions}\n    WHERE NOT ({emptied})\n"
                     "    RETURNING {keys}").format(
        constraint=sql.Identifier(f"{table}_key"), additions=sql.SQL(", ").join(additions), emptied=emptied,
        keys=sql.SQL(", ").join(sql.SQL("stored.{}").format(sql.Identifier(column)) for column in spec["keys"]))
    # The groups the upsert returned nothing for: stored rows its WHERE left, their counts brought to zero (EXCEPT
    # matches NULL keys with NULL keys, as the tables' keys do). A few rows: each found through the key index,
    # then deleted by its tuple id.
    emptied_rows = sql.SQL("SELECT found.stored_row, found.stored_table\n"
                           "        FROM (SELECT {keys} FROM {deltas} EXCEPT ALL SELECT {keys} FROM {upserted}) AS e\n"
                           "        CROSS JOIN LATERAL ({lookup}) AS found").format(
        keys=keys, deltas=sql.Identifier(f"deltas_{table}"), upserted=sql.Identifier(f"{table}_upserted"),
        lookup=_lookup(table))
    removed = sql.SQL("{name} AS (\n    DELETE FROM {target} AS t\n"
                      "    WHERE t.ctid = ANY (ARRAY(SELECT stored_row FROM {emptied}))\n"
                      "      AND (t.tableoid, t.ctid) IN (SELECT stored_table, stored_row FROM {emptied})\n"
                      "    RETURNING 1\n)").format(
        name=sql.Identifier(f"{table}_removed"), target=target, emptied=sql.Identifier(f"{table}_emptied"))
    emptied_cte = sql.SQL("{name} AS MATERIALIZED (\n        {rows}\n)").format(
        name=sql.Identifier(f"{table}_emptied"), rows=emptied_rows)
    return [_insert(table, name=f"{table}_upserted", tail=upsert), emptied_cte, removed]


def _insert(table: str, *, name: str, tail: sql.Composable = sql.SQL("RETURNING 1")) -> sql.Composed:
    """Insert the delta rows in key order, with the owner's name and flag (``tail``: ON CONFLICT, RETURNING)."""
    spec = TABLES[table]
    keys = [sql.Identifier(column) for column in spec["keys"]]
    sums = [sql.Identifier(column) for column in spec["sums"]]
    return sql.SQL("{name} AS (\n    INSERT INTO {target} AS stored ({keys}, owner_name, owner_active, {sums})\n"
                   "    SELECT {d_keys}, owners.full_name, owners.is_active, {d_sums}\n"
                   "    FROM {deltas} AS d LEFT JOIN users AS owners ON owners.id = d.owner_id\n"
                   "    ORDER BY {d_keys}\n    {tail}\n)").format(
        name=sql.Identifier(name), target=sql.Identifier(table),
        keys=sql.SQL(", ").join(keys), sums=sql.SQL(", ").join(sums),
        d_keys=sql.SQL(", ").join(sql.SQL("d.{}").format(key) for key in keys),
        d_sums=sql.SQL(", ").join(sql.SQL("d.{}").format(column) for column in sums),
        deltas=sql.Identifier(f"deltas_{table}"), tail=tail)


def _rows_read(sources: list[str]) -> sql.Composed:
    pairs = [sql.SQL("{}, (SELECT count(*) FROM {})").format(sql.Literal(name), sql.Identifier(SOURCES[name]["images"]))
             for name in sources]
    return sql.SQL("json_build_object({})").format(sql.SQL(", ").join(pairs))


def _count_sum(ctes: list[str]) -> sql.Composable:
    if not ctes:
        return sql.SQL("0")
    return sql.SQL(" + ").join(sql.SQL("(SELECT count(*) FROM {})").format(sql.Identifier(cte)) for cte in ctes)


def _months(tables: list[str]) -> sql.Composable:
    if not tables:
        return sql.SQL("NULL::date[]")
    return sql.SQL("(SELECT array_agg(DISTINCT period_start ORDER BY period_start) FROM ({}) AS months)").format(
        sql.SQL(" UNION ALL ").join(sql.SQL("SELECT period_start FROM {}").format(sql.Identifier(f"deltas_{table}"))
                                    for table in tables))
