"""Warming the facet and report read paths before the day's first users arrive.

The precomputed facet counts and report aggregates live in PostgreSQL, not
in Redis: a Redis copy would be a second source of truth to keep atomic
with the first, for no gain (a published read is a ~1 ms index range). What
goes cold overnight is PostgreSQL's buffer cache and the OS page cache. So
these warmers run the very reads users make first: every entity's
unfiltered faceted search and one filtered by its first facet's top value,
every report at its default grain overall and per owner. The pages those
reads touch are then in memory. Read-only; safe to kill and re-run.
"""

from __future__ import annotations

import time

from crmtasks.pg import db
from crmtasks.search.facets import ENTITIES
from crmtasks.settings import Settings


def warm_facets(settings: Settings) -> dict:
    """Run each entity's first searches; stats: ``queries``, ``entities`` not yet published, ``duration_s``."""
    from crmtasks.search.query import faceted_search

    started, queries, unpublished = time.perf_counter(), 0, []
    db.bind(settings)
    with db.connection():
        for entity in ENTITIES.values():
            result = faceted_search(entity.name)
            queries += 1
            if result.source != "precomputed":
                unpublished.append(entity.name)
                continue
            first = entity.facets[0].name
            top_values = [value for value in result.facets[first] if value is not None][:1]
            for value in top_values:
                faceted_search(entity.name, filters={first: value})
                queries += 1
    return {"keys": 0, "bytes": 0, "queries": queries, "unpublished": unpublished,
            "duration_s": round(time.perf_counter() - started, 3)}


def warm_reports(settings: Settings) -> dict:
    """Read every report overall and per owner; stats: ``queries``, ``rows``, ``not_ready``, ``duration_s``."""
    from crmtasks.reports import REPORTS
    from crmtasks.reports.errors import AggregatesNotReady

    started, queries, rows, not_ready = time.perf_counter(), 0, 0, []
    db.bind(settings)
    with db.connection():
        for spec in REPORTS.values():
            for by_owner in (False, True):
                try:
                    report = spec.function(by_owner=by_owner)
                except AggregatesNotReady:
                    not_ready.append(spec.name)
                    break
                queries += 1
                rows += len(report.rows)
    return {"keys": 0, "bytes": 0, "queries": queries, "rows": rows, "not_ready": not_ready,
            "duration_s": round(time.perf_counter() - started, 3)}
