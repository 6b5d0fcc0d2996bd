"""Warming the facet read path before the day's first users arrive.

The search index lives in PostgreSQL, not in Redis: a Redis copy would be a
second source of truth to keep atomic with the first, for no gain. What goes
cold overnight is PostgreSQL's buffer cache and the OS page cache (the pages
each search reads live). So this warmer runs the very searches users make
first: every entity's unfiltered faceted search and one filtered by its
first facet's top value. The pages those reads touch are then in memory, and
this process holds the index. Read-only; safe to kill and re-run.
"""

from __future__ import annotations

import time

from crmtasks.pg import db
from crmtasks.search.facets import ENTITIES
from crmtasks.search.query import PRECOMPUTED, faceted_search
from crmtasks.settings import Settings


def warm_facets(settings: Settings) -> dict:
    """Run each entity's first searches; stats: ``queries``, ``entities`` not yet published, ``duration_s``.

    Parameters:
      settings(Settings): Where the database is.
    """
    started, queries, unpublished = time.perf_counter(), 0, []
    db.bind(settings)
    with db.connection():
        for entity in ENTITIES.values():
            result = faceted_search(entity.name)
            queries += 1
            if result.source != PRECOMPUTED:
                unpublished.append(entity.name)
                continue
            first = entity.facets[0].name
            top_values = [value for value in result.facets[first] if value is not None][:1]
            for value in top_values:
                faceted_search(entity.name, filters={first: value})
                queries += 1
    return {"keys": 0, "bytes": 0, "queries": queries, "unpublished": unpublished,
            "duration_s": round(time.perf_counter() - started, 3)}
