"""Growth suite: how the jobs' cost grows with the data, at three sizes.

For each size (``Scale.growth_fractions`` of the scale's CRM and of its
archived month: 100k, 300k and 1M leads at the large scale; 100k, 300k, 1M
and 10M at xlarge) a database of its own is seeded (at xlarge, the 10M size
is the main dataset, measured last, after the other suites), then one child process (so its peak memory is its own)
times, on that data:

- ``precompute_facets``: a first run (no value counts known yet: every pair
  of fields grouped) and a second, steady-state run;
- ``precompute_aggregates``: a full rebuild from the raw tables;
- the audit archive of one month past retention (the archive step and the
  whole retention run).

Seconds per 100k rows that stay flat across sizes mean linear growth; a
peak memory that stays flat means the work happens in PostgreSQL, not in
Python. PostgreSQL's temporary files show whether its work spilled to disk.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg2
from psycopg2 import sql

from benchsuite import dataset
from benchsuite.audit import fill_month, timing_archive_step
from benchsuite.processes import peak_rss_mb, run_in_child
from crmtasks.audit.months import current_month

# The archived month: past the default 12-month retention, so it alone goes.
ARCHIVED_MONTH_AGO = 14


def measure_size(url: str, archive_dir: str) -> dict:
    """In the child: time both precomputes and one archive on the database of ``url``; figures in seconds."""
    from crmtasks.audit.maintenance import run_maintenance
    from crmtasks.reports import refresh as aggregates
    from crmtasks.search.precompute import precompute
    from crmtasks.settings import load_settings

    settings = load_settings({"DATABASE_URL": url, "CRMTASKS_ARCHIVE_DIR": archive_dir})
    conn = psycopg2.connect(url, application_name="crmtasks-bench-growth")
    conn.autocommit = True
    rss_start = peak_rss_mb()
    started = time.perf_counter()
    precompute(conn)
    facets_first_s = time.perf_counter() - started
    started = time.perf_counter()
    facets = precompute(conn)
    facets_s = time.perf_counter() - started
    started = time.perf_counter()
    rebuild = aggregates.refresh(conn, full=True)
    aggregates_s = time.perf_counter() - started
    conn.close()
    timings: dict = {}
    maintenance_conn = psycopg2.connect(url, application_name="crmtasks-bench-growth-audit")
    try:
        started = time.perf_counter()
        with timing_archive_step(timings):
            archived = run_maintenance(maintenance_conn, settings)
        retention_s = time.perf_counter() - started
    finally:
        maintenance_conn.close()
    return {
        "facets_rows": facets["rows_scanned"], "facets_first_s": facets_first_s, "facets_s": facets_s,
        "aggregates_rows": sum(rebuild.rows_read.values()), "aggregates_mode": rebuild.mode,
        "aggregates_s": aggregates_s,
        "archive_rows": archived["rows"], "archive_s": timings.get("archive_s"), "retention_run_s": retention_s,
        "rss_start_mb": round(rss_start, 1), "rss_peak_mb": round(peak_rss_mb(), 1),
    }


def per_100k(seconds: float | None, rows: int) -> float | None:
    """Seconds per 100,000 rows (None without rows)."""
    if seconds is None or not rows:
        return None
    return seconds / rows * 100_000


def run(server: dataset.BenchServer, scale: dataset.Scale, archive_dir: Path, seed_value: int,
        main_url: str | None = None) -> list[dict]:
    """Measure each size, smallest first, in a database of its own (dropped after); one dict per size.

    With ``scale.growth_on_main``, the full size is measured on ``main_url`` (the main dataset) instead.
    """
    results = []
    for number, fraction in enumerate(scale.growth_fractions, start=1):
        crm = scale.crm_at(fraction)
        month_rows = max(1, round(scale.month_rows * fraction))
        on_main = scale.growth_on_main and fraction == 1.0 and main_url is not None
        dataset.log(f"growth: size {number}/{len(scale.growth_fractions)}: {crm.leads:,} leads, "
                    f"archived month of {month_rows:,} rows" + (" (the main dataset)" if on_main else ""))
        url = main_url if on_main else server.create(f"growth{number}")
        try:
            rows = _crm_rows(url) if on_main else dataset.seed(url, crm, 0, seed_value)["rows"]
            conn = psycopg2.connect(url, application_name="crmtasks-bench-growth-fill")
            try:
                fill_month(conn, current_month().plus(-ARCHIVED_MONTH_AGO), month_rows)
            finally:
                conn.close()
            before = dataset.temp_bytes(url)
            result = run_in_child(measure_size, url, str(archive_dir / f"growth{number}"))
            time.sleep(0.5)  # the child's sessions have ended: their statistics reach pg_stat_database
            result["temp_bytes"] = dataset.temp_bytes(url) - before
        finally:
            if not on_main:
                server.drop(url)
        result.update(fraction=fraction, leads=crm.leads, on_main=on_main,
                      crm_rows=sum(v for k, v in rows.items() if k not in ("roles", "users")),
                      facets_s_per_100k=per_100k(result["facets_s"], result["facets_rows"]),
                      aggregates_s_per_100k=per_100k(result["aggregates_s"], result["aggregates_rows"]),
                      archive_s_per_100k=per_100k(result["archive_s"], result["archive_rows"]))
        results.append(result)
    return results


def _crm_rows(url: str) -> dict[str, int]:
    """Rows per CRM table of the database at ``url`` (exact counts: the sizes the growth table reports)."""
    from crmtasks.demo import CRM_TABLES

    counts = {}
    with psycopg2.connect(url, application_name="crmtasks-bench-growth-count") as conn, conn.cursor() as cur:
        for table in CRM_TABLES:
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            counts[table] = cur.fetchone()[0]
    conn.close()
    return counts
