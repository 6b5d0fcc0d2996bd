"""Job ``analytics.warm_caches`` (``warm_caches``), daily at 03:00 UTC.

Fills the caches that the day's first requests would otherwise fill one miss
at a time. Each cache has a warmer in ``WARMERS``: a named function
``warm(settings) -> dict`` that returns its stats, including ``keys`` and
``bytes`` written. The job runs them in order; a warmer that fails does not
stop the others, and the run then fails (and is retried) naming it.
Idempotent and safe to kill -9 and re-run: warmers only overwrite whole
cache entries, and every entry is validated when read, never trusted.

The facet and report warmers (crmtasks.search.warm, crmtasks.reports.warm) run the first
reads users make, so the precomputed tables' pages are in PostgreSQL's
cache; the sharing warmer writes each active user's compiled visibility to
Redis and to the memory of the process running the job (its stats say how
many of each, and the consistency mode).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from crmtasks.errors import CrmtasksError
from crmtasks.reports.warm import warm_reports
from crmtasks.search.warm import warm_facets
from crmtasks.settings import Settings, get_settings
from crmtasks.sharing.warm import warm_visibility

logger = logging.getLogger(__name__)

JOB_NAME = "warm_caches"


@dataclasses.dataclass(frozen=True)
class Warmer:
    """One cache to warm.

    Parameters:
      name(str): Key of its stats in the run's stats (``sharing_visibility``).
      warm(callable): ``warm(settings) -> dict`` of stats with ``keys`` and ``bytes``.
    """

    name: str
    warm: Callable[[Settings], dict]


WARMERS: tuple[Warmer, ...] = (
    Warmer("sharing_visibility", warm_visibility),
    Warmer("facets", warm_facets),
    Warmer("reports", warm_reports),
)


class WarmingFailed(CrmtasksError):
    """One or more warmers failed (the others ran); the message names them."""


def run() -> dict:
    """Run every warmer; returns totals (keys, bytes, duration_s) and each warmer's stats under its name."""
    settings = get_settings()
    started = time.perf_counter()
    stats: dict = {"keys": 0, "bytes": 0}
    failures: list[tuple[str, BaseException]] = []
    for warmer in WARMERS:
        try:
            result = warmer.warm(settings)
        except Exception as error:
            logger.exception("warm_caches: warmer %s failed", warmer.name)
            failures.append((warmer.name, error))
            continue
        stats[warmer.name] = result
        stats["keys"] += int(result.get("keys", 0))
        stats["bytes"] += int(result.get("bytes", 0))
    stats["duration_s"] = round(time.perf_counter() - started, 3)
    if failures:
        names = ", ".join(f"{name} ({type(error).__name__}: {error})" for name, error in failures)
        raise WarmingFailed(f"warmers failed: {names}") from failures[0][1]
    return stats
