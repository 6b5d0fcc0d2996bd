"""Warming the report read path before the day's first users arrive.

The report aggregates live in PostgreSQL; what goes cold overnight is its
buffer cache and the OS page cache. This warmer reads every report at its
default grain, overall and per owner, so the pages those reads touch are in
memory when users come, and the payloads of the published generation are
kept (``crmtasks.reports.payloads``): those users' calls are one round trip.
Writes only those payloads; safe to kill and re-run.
"""

from __future__ import annotations

import time

from crmtasks.pg import db
from crmtasks.reports import REPORTS
from crmtasks.reports.errors import AggregatesNotReady
from crmtasks.settings import Settings


def warm_reports(settings: Settings) -> dict:
    """Read every report overall and per owner; stats: ``queries``, ``rows``, ``not_ready``, ``duration_s``.

    Parameters:
      settings(Settings): Where the database is.
    """
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
