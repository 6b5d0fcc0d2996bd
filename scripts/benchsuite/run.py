"""``scripts/bench``: seed one dataset, run every suite against it, write the report.

Order: the main dataset is seeded once; then search, reports, sharing and
audit (each alternating baseline and ours), the load suite (many callers
at once, then 1,000 run-now messages to real workers), then each
registered job at this scale, then the growth suite (three sizes, each in a database of its
own). Errors are not swallowed: a suite that fails stops the run (exit 1)
after the databases are dropped; a target missed is a finding, not an error.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import signal
import sys
import time
from pathlib import Path

import psycopg2

from benchsuite import (
    audit,
    audit_queries,
    dataset,
    growth,
    jobs,
    load,
    load_jobs,
    machine,
    report,
    reports,
    search,
    sharing,
)
from benchsuite.dataset import SCALES, log

SUITES = ("search", "reports", "sharing", "audit", "load", "jobs", "growth")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Reproduce every performance claim of the seed side by side (baseline vs crmtasks): writes "
                    "results.json, results.md and ratios.png. Uses the PostgreSQL server of DATABASE_URL (a "
                    "database of its own is created and dropped) and the Redis of REDIS_URL, or the embedded "
                    "servers when unset.")
    parser.add_argument("--scale", choices=tuple(SCALES), default="small",
                        help="small: CI smoke size, under 2 minutes; medium: 300k leads; large: the seed's scale "
                             "(1M leads, 5M audit rows), tens of minutes; xlarge: 10M leads, 3M deals, 5M contacts, "
                             "2M accounts (about 12 GB; seeded in under 10 minutes on 2 cores) (default: small)")
    parser.add_argument("--out", type=Path, help="directory for the results (default: bench-results/<scale>)")
    parser.add_argument("--suites", default=",".join(SUITES),
                        help=f"comma-separated suites to run (default: all: {','.join(SUITES)})")
    parser.add_argument("--seed", type=int, default=42, help="seed of the generated data (default: 42)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database and archives")
    args = parser.parse_args(argv)
    args.suites = [name.strip() for name in args.suites.split(",") if name.strip()]
    unknown = [name for name in args.suites if name not in SUITES]
    if unknown or not args.suites:
        parser.error(f"--suites: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(SUITES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    scale = SCALES[args.scale]
    out = args.out or Path("bench-results") / scale.name
    command = " ".join(["scripts/bench", *map(shlex.quote, argv)])
    started = time.perf_counter()
    from crmtasks.settings import SettingsError

    # A SIGTERM (a timeout, a supervisor) ends the run like Ctrl-C does: the
    # finally blocks below still drop the databases and delete the archives.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        run = dataset.start(os.environ)
    except SettingsError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    log(f"database {run.server.database_name()} (dropped at the end unless --keep); run id {run.server.run_id}")
    try:
        results = measure(run, scale, args, command, started)
        paths = report.write(results, out)
    finally:
        dataset.finish(run, keep=args.keep)
    print(paths["markdown"].read_text())
    log(f"wrote {', '.join(str(path) for path in paths.values())} in {time.perf_counter() - started:.0f} s")
    return 0


def _exit_on_signal(signum, frame) -> None:
    raise SystemExit(128 + signum)


def measure(run: dataset.BenchRun, scale: dataset.Scale, args, command: str, started: float) -> report.Results:
    """Seed the main dataset and run the chosen suites; everything measured, ready to write."""
    conn = psycopg2.connect(run.url, application_name="crmtasks-bench")
    conn.autocommit = True
    try:
        described = machine.describe(conn)
        log(f"scale {scale.name}: seeding {scale.describe()}")
        seeding = dataset.seed(run.url, scale.crm, scale.audit_rows, args.seed)
        rows, raw, job_results, growth_results = [], {}, [], []
        crm = scale.crm
        if "search" in args.suites:
            log(f"search: live vs faceted_search, {scale.search_repeat} calls per shape and side")
            found, raw["search"] = search.run(conn, crm.leads, scale.search_repeat)
            rows += found
        if "reports" in args.suites:
            log(f"reports: live vs view vs ours, {scale.change_cycles} change cycles, {scale.report_repeat} reads")
            found, raw["reports"] = reports.run(conn, crm.users, crm.deals, scale.report_repeat, scale.change_cycles)
            rows += found
        if "sharing" in args.suites:
            log("sharing: can_access uncached vs exact vs notify, pages, notify staleness under writes, memory")
            found, raw["sharing"] = sharing.run(conn, run.settings, scale.sharing_checks, args.seed)
            rows += found
        if "audit" in args.suites:
            log(f"audit: archive a month of {scale.month_rows:,} rows under a writer")
            found, raw["audit"] = audit.run(conn, run.url, run.settings, scale.month_rows, scale.writer_seconds)
            log("audit: everyday questions, partitioned vs the same rows unpartitioned")
            asked, raw["audit"]["queries"] = audit_queries.run(conn, scale.search_repeat)
            rows += found + asked + [audit_queries.verdict(found + asked)]
        if "load" in args.suites:
            log(f"load: 4 calls at 1, 8, 40 threads and 4 processes, pooled vs a connection per thread, "
                f"{scale.load_seconds:g} s per cell; then {load_jobs.MESSAGES:,} run-now messages to real workers")
            found, raw["load"] = load.run(conn, run.url, run.settings, scale.load_seconds, args.seed)
            rows += found
            found, raw["load"]["jobs"] = load_jobs.run(run.url, run.settings, run.archive_dir)
            rows += found
        if "jobs" in args.suites:
            # Something for the aggregates job to fold, as between two scheduled runs.
            reports.change_one_percent(conn, crm.users, scale.change_cycles)
            log("jobs: each registered job once, in a process of its own, after 1% of deals changed")
            job_results = jobs.run(run.url)
        if "growth" in args.suites:
            growth_results = growth.run(run.server, scale, run.archive_dir, args.seed, run.url)
        after = machine.load_and_speed(conn)
    finally:
        conn.close()
    sizes = {**dataclasses.asdict(scale.crm), "audit_rows": scale.audit_rows, "archived_month_rows": scale.month_rows,
             "description": scale.describe()}
    return report.Results(run_id=run.server.run_id, command=command, scale=scale.name, sizes=sizes, machine=described, machine_after=after,
                          seeding=seeding, duration_s=time.perf_counter() - started, rows=rows, jobs=job_results,
                          growth=growth_results, raw=raw)
