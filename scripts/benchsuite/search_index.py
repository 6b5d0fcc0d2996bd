"""The search index's own rows: a facet run after 1% of leads changed vs a full build, the full build, memory.

- **Full build, four entities**: ``precompute(conn, full=True)`` (the
  ``--full`` path of ``analytics.precompute_facets``), timed at the start of
  the search suite, before any search.
- **Facet run after 1% of leads changed**: 1% of leads (every 100th id)
  get a new status and ``updated_at``, then a scheduled run (``precompute``
  without ``full``) is timed against that full build. A build whose job has
  no incremental path recounts everything: the row then shows it (ratio
  near 1, the run's kind in the detail).
- **Memory of a searching process**: a fresh process imports crmtasks'
  search, then searches every entity (unfiltered, then by its two first
  facets' commonest values) so each entity's index is loaded; its resident
  memory after the searches, and how much of it the searches added.

:func:`facet_run` is the one place that calls the job's entry point.
"""

from __future__ import annotations

import inspect
import time

from benchsuite.processes import current_rss_mb, peak_rss_mb, run_in_child
from benchsuite.rows import Row
from benchsuite.search_targets import targets_for

# 1% of leads: the ids in this residue class modulo 100.
CHANGED_RESIDUE = 37


def facet_run(conn, *, full: bool) -> dict:
    """Run the facet job's work once on ``conn`` (what ``analytics.precompute_facets`` runs); its stats.

    ``full=True`` asks for a full build where the job knows the difference (``precompute(full=True)``);
    a job without it recounts everything on every run.
    """
    from crmtasks.search.precompute import precompute

    if full and "full" in inspect.signature(precompute).parameters:
        return precompute(conn, full=True)
    return precompute(conn)


def full_build(conn) -> dict:
    """A full build of every entity's index, timed: ``{"seconds", "kind", "stats"}``."""
    started = time.perf_counter()
    stats = facet_run(conn, full=True)
    return {"seconds": time.perf_counter() - started, "kind": _kind(stats, full=True), "stats": _plain(stats)}


def change_one_percent(conn) -> int:
    """Give 1% of leads (every 100th id) the next status and a new ``updated_at``; the rows changed."""
    with conn.cursor() as cur:
        cur.execute(
            "WITH statuses AS (SELECT array_agg(status ORDER BY status) AS all_ FROM (SELECT DISTINCT status "
            "FROM leads WHERE status IS NOT NULL) AS s) "
            "UPDATE leads SET status = all_[1 + array_position(all_, status) %% cardinality(all_)], "
            "updated_at = now() FROM statuses WHERE id %% 100 = %s AND status IS NOT NULL", (CHANGED_RESIDUE,))
        return cur.rowcount


def memory_row_searches(name: str, entity):
    """The memory row's two searches of one entity: unfiltered, then by its two first facets' commonest values.

    Returns the unfiltered search's result (its ``source`` says whether an index answered).
    """
    from crmtasks.search import faceted_search

    result = faceted_search(name)
    filters = {}
    for facet in entity.facets[:2]:
        common = [value for value in result.facets.get(facet.name, {}) if value is not None]
        if common:
            filters[facet.name] = common[0]
    faceted_search(name, filters)
    return result


def searching_memory() -> dict:
    """In a fresh child: resident memory after importing search, and after searching every entity once."""
    started = current_rss_mb()
    from crmtasks.pg import db
    from crmtasks.search import faceted_search
    from crmtasks.search.facets import ENTITIES
    from crmtasks.settings import get_settings

    db.bind(get_settings())
    imported = current_rss_mb()
    searches = 0
    for name, entity in ENTITIES.items():
        memory_row_searches(name, entity)
        searches += 2
    after = current_rss_mb()
    db.database.obj.close_all()
    return {"rss_start_mb": round(started, 1), "rss_imported_mb": round(imported, 1),
            "rss_after_mb": round(after, 1), "rss_peak_mb": round(peak_rss_mb(), 1),
            "index_mb": round(after - imported, 1), "entities": len(ENTITIES), "searches": searches}


def run(conn, leads: int, built: dict) -> tuple[list[Row], dict]:
    """After the searches: change 1% of leads, time a scheduled run, measure a searching process's memory."""
    changed = change_one_percent(conn)
    started = time.perf_counter()
    stats = facet_run(conn, full=False)
    delta_s = time.perf_counter() - started
    memory = run_in_child(searching_memory, timeout_s=1800)
    raw = {"full_build": built, "changed_leads": changed,
           "after_change": {"seconds": delta_s, "kind": _kind(stats, full=False), "stats": _plain(stats)},
           "memory": memory}
    return rows_from(raw, leads), raw


def rows_from(raw: dict, leads: int) -> list[Row]:
    """The three rows, against the column of issue 12's targets for ``leads``."""
    targets = targets_for(leads)
    built, after, memory = raw["full_build"], raw["after_change"], raw["memory"]
    if targets.delta_share is not None:
        delta_met = after["seconds"] <= targets.delta_share * built["seconds"]
        delta_target = f"<= {targets.delta_share:.0%} of a full build ({targets.column})"
    else:
        delta_met = after["seconds"] <= targets.delta_s
        delta_target = f"<= {targets.delta_s:g} s ({targets.column})"
    return [
        Row(suite="search", metric="facet run after 1% of leads changed vs a full build", unit="s",
            baseline=built["seconds"], ours=after["seconds"], target=delta_target, met=delta_met,
            target_ratio=targets.delta_share,
            detail=(f"{raw['changed_leads']:,} leads changed (status, updated_at); the run was a {after['kind']}; "
                    f"the full build: {built['kind']}")),
        Row(suite="search", metric="full build, four entities", unit="s", baseline=None, ours=built["seconds"],
            target=f"<= {targets.full_build_s:g} s ({targets.column})", met=built["seconds"] <= targets.full_build_s,
            detail=f"{built['kind']}; {_summary(built['stats'])}"),
        Row(suite="search", metric=f"memory of a searching process, {memory['entities']} entities' index loaded",
            unit="MiB", baseline=None, ours=memory["rss_after_mb"],
            target=f"<= {targets.memory_mib:g} MiB ({targets.column})",
            met=memory["rss_after_mb"] <= targets.memory_mib,
            detail=(f"resident after importing search {memory['rss_imported_mb']:.0f} MiB, after {memory['searches']} "
                    f"searches {memory['rss_after_mb']:.0f} MiB (+{memory['index_mb']:.0f} MiB); peak "
                    f"{memory['rss_peak_mb']:.0f} MiB; a fresh process")),
    ]


def _kind(stats: dict, *, full: bool) -> str:
    """What the run did, in words: the job's own ``kind`` when it reports one."""
    kind = stats.get("kind") if isinstance(stats, dict) else None
    if kind:
        return f"{kind} build" if kind in ("full", "delta") else str(kind)
    return "full recount (this build's job has no incremental path)" if not full else "full recount"


def _summary(stats: dict) -> str:
    keys = ("rows_indexed", "rows_scanned", "facet_rows_written", "generation", "bytes")
    shown = [f"{key} {stats[key]:,}" if isinstance(stats[key], int) else f"{key} {stats[key]}"
             for key in keys if key in stats and not isinstance(stats[key], dict)]
    return ", ".join(shown) or "no stats"


def _plain(stats: dict) -> dict:
    """The stats as JSON can hold them (timestamps as text)."""
    import json

    return json.loads(json.dumps(stats, default=str))
