"""Counting every facet of every entity and publishing the counts atomically (``analytics.precompute_facets``).

What is computed, for each entity of the facet registry, from one snapshot
(all into ``facet_counts``):
  - one-dimensional counts: records per value of each facet field; they
    answer a search with no filter;
  - pairwise counts: for every pair of facet fields A, B, records per value
    of B among records with A = a (both directions, plus the diagonal A
    given A); they answer a search filtered on one field (a value or a list),
    including "my records" (owner = me).
Searches the published counts cannot answer (two filters, ranges, text) are
counted live by search itself.

Guarantees:
  - Set-based: each entity is one ``INSERT ... SELECT ... GROUP BY GROUPING
    SETS`` statement run by PostgreSQL in one scan; no record reaches Python,
    so this process's memory stays flat whatever the table sizes. The
    grouping sets are the fewest that contain every pair of fields, sized
    from the value counts of the previous generation (every pair on a first
    run), see ``choose_grouping_sets``.
  - Exact as of ``as_of``: every count comes from one REPEATABLE READ snapshot,
    stamped just before it is taken.
  - Atomic: a new generation is written, ``facet_current`` is pointed at it and
    older generations are deleted in the same transaction; readers see the
    whole old set or the whole new one. Killed at any point (even kill -9),
    nothing is published and the previous generation stays current.
  - Idempotent: a re-run publishes the same counts (for unchanged data) and
    leaves exactly one generation.
  - Keeps its tables small: it vacuums them after publishing (a few hundred
    ms at most), so dead generations never pile up, autovacuum or not.
  - Does not block CRM writers (it only reads their tables). Publishers are
    serialized by a session advisory lock taken before the snapshot, so a
    concurrent run waits and then counts newer data, never older.
"""

from __future__ import annotations

import itertools
import json
import time

import psycopg2.extensions
from psycopg2 import sql

from crmtasks.pg import AdvisoryLock, quietly, transaction
from crmtasks.search import sql as facet_sql
from crmtasks.search.facets import ENTITIES, Entity

# Memory PostgreSQL may use per hash table while counting; the counts of all
# grouping sets of an entity fit in a few MB, this leaves room for the join of
# contacts to accounts. Bounded, so the server's memory stays flat too.
WORK_MEM = "64MB"
# Most groups one grouping set may have (the product of its fields' value
# counts): wider sets mean fewer hash lookups per record, but bigger tables.
MOST_GROUPS_PER_SET = 100_000


def precompute(conn: psycopg2.extensions.connection, entities: list[Entity] | None = None, *,
               statement_timeout_ms: int = 0) -> dict:
    """Count the facets of ``entities`` (default: all) and publish them as the current generation.

    Parameters:
      conn(connection): A psycopg2 connection outside any transaction.
      entities(list): Entities to count; those left out have no facets in the new generation.
      statement_timeout_ms(int): PostgreSQL statement_timeout for the run's statements (0: none),
        so a time limit also stops SQL that Python cannot interrupt.

    Returns the stats: rows_scanned, facet_rows_written, duration_s (seconds, whole run), generation,
    as_of, vacuum_s, and per entity: rows (records counted), facet_values (distinct values over its
    facet fields), facet_rows (rows written), grouping_sets (hash tables per record), duration_s.
    """
    if conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
        raise RuntimeError("precompute_facets needs a connection that is not inside a transaction")
    entities = list(ENTITIES.values()) if entities is None else entities
    started = time.perf_counter()
    was_autocommit = conn.autocommit
    conn.autocommit = True  # transactions below are explicit
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (AdvisoryLock.FACET_PUBLISH.key,))
            try:
                stats = _publish(conn, entities, statement_timeout_ms, started)
                vacuum_started = time.perf_counter()
                # Reclaim the generation just replaced now rather than whenever autovacuum
                # comes (if it is on at all): the table stays about two generations big.
                cur.execute("VACUUM facet_counts, facet_generations, facet_current")
                stats["vacuum_s"] = round(time.perf_counter() - vacuum_started, 3)
                stats["duration_s"] = round(time.perf_counter() - started, 3)
            finally:
                quietly(cur, "SELECT pg_advisory_unlock(%s)", (AdvisoryLock.FACET_PUBLISH.key,))
    finally:
        if conn.closed == 0:
            conn.autocommit = was_autocommit
    return stats


def _publish(conn, entities: list[Entity], statement_timeout_ms: int, started: float) -> dict:
    # The opening round trip's SELECT statement_timestamp() takes the snapshot every count below is read from.
    with transaction(conn, repeatable_read=True, stamped=True,
                     local={"statement_timeout": str(statement_timeout_ms), "work_mem": WORK_MEM}) as cur:
        as_of = cur.fetchone()[0]
        cur.execute("INSERT INTO facet_generations (as_of) VALUES (%s) RETURNING id", (as_of,))
        generation = cur.fetchone()[0]
        per_entity = {entity.name: _count_entity(cur, entity, generation) for entity in entities}
        cur.execute("INSERT INTO facet_current (singleton, generation_id, as_of) VALUES (true, %s, %s) "
                    "ON CONFLICT (singleton) DO UPDATE SET generation_id = EXCLUDED.generation_id, "
                    "as_of = EXCLUDED.as_of", (generation, as_of))
        cur.execute("DELETE FROM facet_counts WHERE generation_id <> %s", (generation,))
        cur.execute("DELETE FROM facet_generations WHERE id <> %s", (generation,))
        stats = {
            "rows_scanned": sum(entity["rows"] for entity in per_entity.values()),
            "facet_rows_written": sum(entity["facet_rows"] for entity in per_entity.values()),
            "duration_s": round(time.perf_counter() - started, 3),
            "generation": generation,
            "as_of": as_of.isoformat(),
            "entities": per_entity,
        }
        cur.execute("UPDATE facet_generations SET stats = %s WHERE id = %s", (json.dumps(stats), generation))
    return stats


def _count_entity(cur, entity: Entity, generation: int) -> dict:
    """Write one entity's counts into ``generation``; its stats."""
    started = time.perf_counter()
    grouping_sets = choose_grouping_sets(previous_value_counts(cur, entity))
    cur.execute(count_statement(entity, generation, grouping_sets))
    rows, facet_values, facet_rows = cur.fetchone()
    return {"rows": rows, "facet_values": facet_values, "facet_rows": facet_rows,
            "grouping_sets": len(grouping_sets), "duration_s": round(time.perf_counter() - started, 3)}


def previous_value_counts(cur, entity: Entity) -> list[int | None]:
    """Distinct values (NULL included) of each facet field in the current generation; None where unknown."""
    cur.execute(
        "SELECT c.field, count(*) FROM facet_current AS cur JOIN facet_counts AS c "
        "ON c.generation_id = cur.generation_id AND c.entity = %s AND c.given_field = '' GROUP BY c.field",
        (entity.name,))
    known = dict(cur.fetchall())
    return [known.get(name) for name in entity.facet_names]


def choose_grouping_sets(value_counts: list[int | None], most_groups: int = MOST_GROUPS_PER_SET) -> list[tuple[int, ...]]:
    """Grouping sets (of facet positions) that together contain every pair of facet fields.

    Each set costs one hash lookup per record, so fewer, wider sets are
    cheaper, as long as a set's possible groups (the product of its fields'
    value counts) stay at most ``most_groups``. Greedy: start from the
    uncovered pair with the fewest groups, add the field covering most
    uncovered pairs while the product allows. A field whose value count is
    unknown (None) is only ever grouped in pairs.
    """
    count = len(value_counts)
    size = [most_groups + 1 if n is None else max(1, n) for n in value_counts]  # unknown: too big to widen
    uncovered = set(itertools.combinations(range(count), 2))
    sets = []
    while uncovered:
        first = min(uncovered, key=lambda pair: (size[pair[0]] * size[pair[1]], pair))
        chosen, groups = list(first), size[first[0]] * size[first[1]]
        while True:
            candidates = []
            for k in range(count):
                gain = sum(1 for c in chosen if (min(c, k), max(c, k)) in uncovered)
                if k not in chosen and gain and groups * size[k] <= most_groups:
                    candidates.append((-gain, size[k], k))
            if not candidates:
                break
            k = min(candidates)[2]
            chosen.append(k)
            groups *= size[k]
        chosen.sort()
        sets.append(tuple(chosen))
        uncovered -= set(itertools.combinations(chosen, 2))
    return sets


def count_statement(entity: Entity, generation: int, grouping_sets: list[tuple[int, ...]] | None = None) -> sql.Composable:
    """One statement that counts ``entity`` and writes its ``facet_counts`` rows of generation ``generation``.

    It groups the whole table once by ``grouping_sets`` (GROUPING SETS, hashed
    in one pass; default: every pair of fields), which together contain every
    pair of facet fields, and derives everything from those groups: each
    pair's counts by summing its set over the set's other fields, the
    one-dimensional counts by summing a pair over its other field. They are
    stored unconditioned (``given_field = ''``), as the diagonal (given A = a:
    A = a), and each pair in both directions. Returns one row: records
    counted, facet values, rows written.
    """
    names = entity.facet_names
    if len(names) < 2:
        raise ValueError(f"{entity.name}: the registry needs at least two facet fields per entity")
    grouping_sets = grouping_sets or facet_sql.pair_sets(entity)
    unpivot, designated = _pair_rows(entity)
    return sql.SQL(
        "WITH grouped AS MATERIALIZED ({grouped}), "
        # each pair summed over the other fields of its grouping set, then turned from positions into names
        "pairs AS MATERIALIZED (SELECT p.field_a, p.value_a, p.field_b, p.value_b, s.n "
        "FROM ({resummed}) AS s JOIN LATERAL (VALUES {unpivot}) AS p (pair_mask, field_a, value_a, field_b, value_b) "
        "ON p.pair_mask = s.pair_mask), "
        "directed AS MATERIALIZED (SELECT field_a, value_a, field_b, value_b, n FROM pairs "
        "UNION ALL SELECT field_b, value_b, field_a, value_a, n FROM pairs), "
        "singles AS MATERIALIZED (SELECT field_a AS field, value_a AS value, sum(n)::bigint AS n FROM directed "
        "WHERE (field_a, field_b) IN ({designated}) GROUP BY field_a, value_a), "
        "written AS (INSERT INTO facet_counts (generation_id, entity, given_field, given_value, field, value, count) "
        "SELECT {gen}, {entity}, given_field, given_value, field, value, n FROM ("
        "SELECT '' AS given_field, NULL::text AS given_value, field, value, n FROM singles "
        "UNION ALL SELECT field, value, field, value, n FROM singles "
        "UNION ALL SELECT field_a, value_a, field_b, value_b, n FROM directed) AS counted RETURNING 1) "
        "SELECT (SELECT coalesce(sum(n), 0)::bigint FROM singles WHERE field = {first_field}), "
        "(SELECT count(*) FROM singles), (SELECT count(*) FROM written)"
    ).format(
        grouped=facet_sql.grouped_counts(entity, sql.SQL("TRUE"), grouping_sets),
        resummed=sql.SQL(" UNION ALL ").join(_resummed_pairs(entity, grouping_sets)),
        unpivot=unpivot, designated=designated,
        gen=sql.Literal(generation), entity=sql.Literal(entity.name), first_field=sql.Literal(names[0]),
    )


def _value(i: int) -> sql.Identifier:
    return sql.Identifier(f"v{i}")


def _resummed_pairs(entity: Entity, grouping_sets: list[tuple[int, ...]]) -> list[sql.Composable]:
    """Per grouping set, a SELECT summing it down to each pair it is the source of (tagged by the pair's mask)."""
    count = len(entity.facets)
    pairs_of_set: dict[tuple[int, ...], list[tuple[int, int]]] = {}
    for i, j in facet_sql.pair_sets(entity):
        source = next(grouped for grouped in grouping_sets if i in grouped and j in grouped)
        pairs_of_set.setdefault(source, []).append((i, j))
    resummed = []
    for source, pairs in pairs_of_set.items():
        paired = sorted({i for pair in pairs for i in pair})  # GROUPING() accepts only grouped columns
        local_masks = sql.SQL(" ").join(
            sql.SQL("WHEN {} THEN {}").format(
                sql.Literal(facet_sql.grouping_mask(len(paired), (paired.index(i), paired.index(j)))),
                sql.Literal(facet_sql.grouping_mask(count, (i, j))))
            for i, j in pairs)
        # Columns of other fields are NULL here (UNION ALL needs one shape); no pair of this set reads them.
        columns = sql.SQL(", ").join(
            _value(i) if i in paired else sql.SQL("NULL::text COLLATE \"C\" AS {}").format(_value(i))
            for i in range(count))
        resummed.append(sql.SQL(
            "SELECT CASE GROUPING({source_values}) {local_masks} END AS pair_mask, {columns}, sum(n)::bigint AS n "
            "FROM grouped WHERE grouping_mask = {mask} GROUP BY GROUPING SETS ({pairs})").format(
            source_values=sql.SQL(", ").join(_value(i) for i in paired), local_masks=local_masks, columns=columns,
            mask=sql.Literal(facet_sql.grouping_mask(count, source)),
            pairs=sql.SQL(", ").join(sql.SQL("({}, {})").format(_value(i), _value(j)) for i, j in pairs)))
    return resummed


def _pair_rows(entity: Entity) -> tuple[sql.Composable, sql.Composable]:
    """The VALUES rows turning a pair's mask into field names and values, and each field's designated partner.

    A field's one-dimensional counts are summed from one pair only (its
    designated partner), so each record is counted once per field.
    """
    names = entity.facet_names
    count = len(names)
    unpivot = []
    partner: dict[int, int] = {}
    for i, j in facet_sql.pair_sets(entity):
        partner.setdefault(i, j)
        partner.setdefault(j, i)
        unpivot.append(sql.SQL("({mask}, {field_a}, s.{value_a}, {field_b}, s.{value_b})").format(
            mask=sql.Literal(facet_sql.grouping_mask(count, (i, j))), field_a=sql.Literal(names[i]),
            value_a=_value(i), field_b=sql.Literal(names[j]), value_b=_value(j)))
    designated = sql.SQL(", ").join(
        sql.SQL("({}, {})").format(sql.Literal(names[i]), sql.Literal(names[partner[i]])) for i in range(count))
    return sql.SQL(", ").join(unpivot), designated
