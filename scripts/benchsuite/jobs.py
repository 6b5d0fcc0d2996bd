"""Jobs suite: every registered job's duration and peak memory at the benchmark's scale.

Each job of ``crmtasks.jobs.registry.JOBS`` runs once through
``crmtasks.runs.runner.run_now`` (its mutex, its task_runs record, exactly what
``python -m crmtasks.run --task NAME`` does) in a fresh child process, so
the peak resident memory reported is that process's own: the interpreter
and crmtasks' imports (measured just before the job) plus whatever the job
added. PostgreSQL's temporary files written meanwhile are read from
pg_stat_database (work_mem spills: sorts and hashes too big for memory).

The runs happen after the other suites and after 1% of deals changed, so
they are the scheduled runs of a CRM in steady state: facets recounted,
aggregates folding that change, audit maintenance archiving the months past
the default 12-month retention (on a first run: the backlog of the seeded 24
months), caches warmed.
"""

from __future__ import annotations

import json
import time

from benchsuite.dataset import temp_bytes
from benchsuite.processes import peak_rss_mb, run_in_child

# Stats worth a reader's eye first, when a job returns them.
_KEY_STATS = ("mode", "reason", "kind", "rows_scanned", "bytes_written", "rows_read_total", "aggregate_rows_written",
              "created", "archived", "dropped", "rows", "bytes")


def run_job(name: str) -> dict:
    """In the child: run job ``name`` now under this process's settings; its outcome and memory."""
    from crmtasks.jobs import registry
    from crmtasks.pg import db
    from crmtasks.runs import runner
    from crmtasks.settings import get_settings

    settings = get_settings()
    db.bind(settings).connect(reuse_if_open=True)
    before = peak_rss_mb()
    outcome = runner.run_now(registry.get(name), settings)
    peak = peak_rss_mb()
    db.database.obj.close_all()
    return {"task": name, "status": outcome.status, "duration_s": outcome.duration_s,
            "stats": json.loads(json.dumps(outcome.stats, default=str)), "error": outcome.error,
            "rss_before_job_mb": round(before, 1), "rss_peak_mb": round(peak, 1)}


def what_it_did(stats: dict, most: int = 6) -> str:
    """A one-line summary of a job's stats: the known key figures first, then other scalars."""
    scalars = {key: value for key, value in stats.items()
               if isinstance(value, (int, float, bool)) or (isinstance(value, str) and len(value) <= 40)}
    keys = [key for key in _KEY_STATS if key in scalars]
    keys += [key for key in scalars if key not in keys and key not in ("duration_s", "duration_ms", "as_of")]
    return ", ".join(f"{key} {_number(scalars[key])}" for key in keys[:most])


def _number(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


def run(url: str) -> list[dict]:
    """Run every registered job once, each in its own child process; one dict per job, in registry order."""
    from crmtasks.jobs import registry

    results = []
    for spec in registry.JOBS:
        before = temp_bytes(url)
        result = run_in_child(run_job, spec.name, timeout_s=spec.time_limit_s + 120)
        time.sleep(0.5)  # the child's sessions have ended: their statistics reach pg_stat_database
        result["temp_bytes"] = temp_bytes(url) - before
        result["summary"] = what_it_did(result["stats"]) if result["status"] != "failed" else result["error"]
        results.append(result)
    return results
