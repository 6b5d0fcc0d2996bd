"""Building and publishing the search index (``analytics.precompute_facets``): a full build or a delta.

What a run publishes, from one REPEATABLE READ snapshot, as a new generation
(``search_index_generations``, parts in ``search_index_parts``):
  - a *full build* (a base): every row of every entity, read with one
    ``COPY`` per entity (``crmtasks.search.index_read``), serialized column
    by column (``crmtasks.search.index_store``), its text columns dictionary-coded
    (``crmtasks.search.coded_text``). Done on the first run, when
    asked (``full=True``, ``crmtasks run --full``, a TRUNCATE of a CRM
    table), once the base is older than ``FULL_BUILD_AFTER``, and when the
    delta would hold more than ``MOST_DELTA_SHARE`` of the base's rows;
  - otherwise a *delta* on the current base: the rows changed since the
    previous generation (``search_changes``, filled by triggers) are read
    live and folded into the previous delta; only the delta is written. So
    a steady-state run costs what changed, not the table sizes.

Guarantees:
  - Exact as of ``as_of``: a change is in the generation exactly when its
    transaction is visible in the run's snapshot, which is stored with it
    (``pg_snapshot``); searches read the rest back from the change log.
  - Atomic: the generation, its parts, the pointer ``search_index_current``,
    the trim of the change log (the rows visible in the run's snapshot) and
    the deletion of generations no longer needed are one transaction. Killed
    at any point (even kill -9), nothing is published and nothing is lost.
  - Idempotent; does not block CRM writers (it only reads their tables and
    deletes log rows they no longer touch). Publishers are serialized by a
    session advisory lock taken before the snapshot.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import time

import numpy as np
import psycopg2.extensions
from psycopg2 import sql

from crmtasks.errors import CrmtasksError
from crmtasks.pg import AdvisoryLock, quietly, transaction
from crmtasks.search.coded_text import with_coded_texts
from crmtasks.search.facets import ENTITIES, Entity
from crmtasks.search.index import EntityIndex
from crmtasks.search.index_cache import changed_ids_sql, load_delta
from crmtasks.search.index_read import read_index, read_rows_of_ids
from crmtasks.search.index_store import index_parts, removed_part, write_parts
from crmtasks.search.segments import combine

# A base older than this is rebuilt from scratch: the safety net against any drift.
FULL_BUILD_AFTER = datetime.timedelta(hours=24)
# A delta holding more than this share of the base's rows is folded into a new base (a full build).
MOST_DELTA_SHARE = 0.1
# ... but a delta this small is always fine (small tables would otherwise be rebuilt on most runs).
ALWAYS_DELTA_ROWS = 10_000


class _DeltaTooBig(CrmtasksError):
    """A delta run found the delta too big (or a table truncated): the run becomes a full build."""


def precompute(conn: psycopg2.extensions.connection, entities: list[Entity] | None = None, *,
               statement_timeout_ms: int = 0, full: bool = False) -> dict:
    """Build the search index of ``entities`` (default: all) and publish it as the current generation.

    Parameters:
      conn(connection): A psycopg2 connection outside any transaction.
      entities(list): Entities to index (default: every one; a full build indexes only these).
      statement_timeout_ms(int): PostgreSQL statement_timeout for the run's statements (0: none).
      full(bool): Build from scratch even when a delta would do.

    Returns the stats: kind (``full`` or ``delta``), generation, base, as_of, rows_scanned (rows
    read), bytes_written, duration_s, and per entity: rows (in the index), changed (rows read as
    changed), bytes, duration_s.
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
                try:
                    stats = _publish(conn, entities, statement_timeout_ms, full)
                except _DeltaTooBig:
                    stats = _publish(conn, entities, statement_timeout_ms, True)
                # Dead generations and trimmed log rows are reclaimed now, autovacuum or not.
                cur.execute("VACUUM search_index_parts, search_index_generations, search_changes")
                stats["duration_s"] = round(time.perf_counter() - started, 3)
            finally:
                quietly(cur, "SELECT pg_advisory_unlock(%s)", (AdvisoryLock.FACET_PUBLISH.key,))
    finally:
        if conn.closed == 0:
            conn.autocommit = was_autocommit
    return stats


def request_full_build(conn: psycopg2.extensions.connection) -> None:
    """Make the next run a full build (``crmtasks run --task precompute_facets --full``). Idempotent."""
    with conn.cursor() as cur:
        cur.execute("INSERT INTO search_index_current (singleton, full_requested) VALUES (true, true) "
                    "ON CONFLICT (singleton) DO UPDATE SET full_requested = true")
    conn.commit()


def _previous(cur) -> dict | None:
    """The current generation (id, base id, base as_of, base rows per entity), None when a full build is due."""
    cur.execute(
        "SELECT g.id, coalesce(g.base_id, g.id), b.as_of, b.stats, cur.full_requested "
        "FROM search_index_current AS cur JOIN search_index_generations AS g ON g.id = cur.generation_id "
        "JOIN search_index_generations AS b ON b.id = coalesce(g.base_id, g.id)")
    row = cur.fetchone()
    if row is None or row[4]:
        return None
    generation, base_id, base_as_of, base_stats, _ = row
    return {"generation": generation, "base_id": base_id, "base_as_of": base_as_of,
            "base_rows": {name: entity["rows"] for name, entity in base_stats.get("entities", {}).items()}}


def _publish(conn, entities: list[Entity], statement_timeout_ms: int, full: bool) -> dict:
    with transaction(conn, repeatable_read=True, stamped=True,
                     local={"statement_timeout": str(statement_timeout_ms)}) as cur:
        as_of = cur.fetchone()[0]
        previous = None if full else _previous(cur)
        if previous is not None and (as_of - previous["base_as_of"] > FULL_BUILD_AFTER
                                     or set(previous["base_rows"]) != {entity.name for entity in entities}):
            previous = None
        base_id = previous["base_id"] if previous else None
        cur.execute("INSERT INTO search_index_generations (base_id, snapshot, as_of) "
                    "VALUES (%s, pg_current_snapshot(), %s) RETURNING id", (base_id, as_of))
        generation = cur.fetchone()[0]
        if previous is None:
            per_entity = _full_entities(cur, entities, generation)
        else:
            per_entity = {}
            for entity in entities:
                entity_started = time.perf_counter()
                per_entity[entity.name] = _delta_entity(cur, entity, generation, previous)
                per_entity[entity.name]["duration_s"] = round(time.perf_counter() - entity_started, 3)
        stats = {
            "kind": "full" if previous is None else "delta", "generation": generation,
            "base": generation if previous is None else base_id, "as_of": as_of.isoformat(),
            "rows_scanned": sum(e["changed"] for e in per_entity.values()),
            "bytes_written": sum(e["bytes"] for e in per_entity.values()), "entities": per_entity,
        }
        cur.execute("UPDATE search_index_generations SET stats = %s WHERE id = %s", (json.dumps(stats), generation))
        cur.execute("INSERT INTO search_index_current (singleton, generation_id) VALUES (true, %s) ON CONFLICT (singleton) "
                    "DO UPDATE SET generation_id = EXCLUDED.generation_id, full_requested = false", (generation,))
        # The log rows this snapshot sees are in the generation now; later ones stay for searches and the next run.
        cur.execute("DELETE FROM search_changes")
        cur.execute("DELETE FROM search_index_generations WHERE id NOT IN (%s, %s)",
                    (generation, base_id if base_id is not None else generation))
    return stats


def _full_entities(cur, entities: list[Entity], generation: int) -> dict:
    """Read, code and write every entity's base, coding one entity while the next one is read.

    Why a second thread: reading is mostly waiting for PostgreSQL to send the ``COPY`` (the driver
    lets go of the GIL meanwhile), and coding the text columns (``with_coded_texts``) is Python
    work of about the same length, so on two cores the two overlap instead of adding up. Only one
    entity waits coded at a time, so the build holds at most two entities' rows; the writes stay
    on the run's connection, in order. Each entity's ``duration_s`` is its read, coding and write
    time, so with the overlap their sum is more than the run took.
    """
    per_entity: dict[str, dict] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="crmtasks-code") as coder:
        waiting = None
        for entity in entities:
            started = time.perf_counter()
            index = read_index(cur, entity)
            read_s = time.perf_counter() - started
            coded = coder.submit(_coded_parts, index)
            del index
            if waiting is not None:
                per_entity.update(_write_coded(cur, generation, *waiting))
            waiting = (entity, coded, read_s)
        if waiting is not None:
            per_entity.update(_write_coded(cur, generation, *waiting))
    return per_entity


def _coded_parts(index: EntityIndex) -> tuple[int, dict[str, bytes], float]:
    """``(rows, parts, seconds)``: ``index`` with its text coded (as searching processes hold a base), serialized."""
    started = time.perf_counter()
    parts = index_parts(with_coded_texts(index))
    return len(index), parts, time.perf_counter() - started


def _write_coded(cur, generation: int, entity: Entity, coded, read_s: float) -> dict:
    rows, parts, code_s = coded.result()
    started = time.perf_counter()
    written = write_parts(cur, generation, entity.name, parts)
    duration_s = read_s + code_s + time.perf_counter() - started
    return {entity.name: {"rows": rows, "changed": rows, "bytes": written, "duration_s": round(duration_s, 3)}}


def _delta_entity(cur, entity: Entity, generation: int, previous: dict) -> dict:
    """Write the entity's delta: the previous delta with the rows changed since refreshed.

    Raises _DeltaTooBig when it would hold too many rows, or a table was truncated.
    """
    cur.execute(sql.SQL(
        "SELECT ARRAY(SELECT DISTINCT c.record_id FROM ({changed}) AS c (record_id)) "
        "FROM search_index_generations AS g WHERE g.id = {previous}").format(
        changed=changed_ids_sql(entity), previous=sql.Literal(previous["generation"])))
    changed_list = cur.fetchone()[0]
    if None in changed_list:
        raise _DeltaTooBig(entity.name)  # a whole table changed (TRUNCATE)
    changed = np.array(sorted(changed_list), dtype=np.int64)
    old_delta, old_removed = load_delta(cur, entity.name, previous["generation"], previous["base_id"])
    fresh = read_rows_of_ids(cur, entity, changed)
    kept = _delta_kept(old_delta, changed)
    delta = combine(entity.name, [(old_delta, kept), (fresh, np.arange(len(fresh)))]) if old_delta is not None \
        else fresh
    removed = np.union1d(old_removed, changed)
    if len(removed) > max(MOST_DELTA_SHARE * previous["base_rows"].get(entity.name, 0), ALWAYS_DELTA_ROWS):
        raise _DeltaTooBig(entity.name)
    parts = index_parts(delta, prefix="delta:")
    parts["removed"] = removed_part(removed)
    written = write_parts(cur, generation, entity.name, parts)
    return {"rows": len(delta), "changed": len(changed), "bytes": written}


def _delta_kept(delta: EntityIndex | None, changed: np.ndarray) -> np.ndarray:
    if delta is None:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(~np.isin(delta.ids, changed))
