#!/usr/bin/env python3
"""Benchmark of the audit archive: throughput, and what each maintenance step does to a concurrent writer.

    python scripts/bench_audit.py [--rows 1000000] [--rounds 2] [--writer-seconds 5] [--variants default,unthrottled]
                                  [--compression zstd|gzip] [--level N]

Makes a database of its own on the server of DATABASE_URL (created and
dropped here), fills --rounds months past retention with --rows realistic
rows each, and the month before the current one (which the count step
counts), then, under one writer process (crmtasks.audit.record, one row per
transaction, --writer-rate per second, a process of its own so that it and
the maintenance never share a GIL), alternates:
1. a baseline window: the writer alone for --writer-seconds;
2. a maintenance run (run_maintenance: premake, detach, archive = COPY ->
   zstd -> fsync -> read back -> verify, verify again, drop, index, count
   the previous month) that archives the oldest remaining month, with the
   settings of the round's variant (--variants, taken in turn);
and ends with one more baseline window. Each insert is put in the step
that was running when it started.
Prints, per variant: archive throughput (rows/s of the archive step, and of
the whole retention run) and the writer's p50/p99 in the pooled baseline
windows vs during maintenance and per step, against the targets (>= 600k
rows/s; p99 during <= 2x baseline; no failed insert).
On a shared machine the baseline windows drift: compare variants only
within one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _venv import use_project_venv  # scripts/_venv.py: this script's directory is first on sys.path

use_project_venv()  # a fresh clone's python3 lacks psycopg2: re-run under the project's virtualenv

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from benchsuite.audit import (
    MAINTENANCE_STEPS,
    TARGET_P99_RATIO,
    TARGET_ROWS_PER_S,
    archive_rounds,
    baseline_latencies,
    fill_month,
    latencies,
    latencies_by_step,
)
from benchsuite.dataset import BenchServer
from benchsuite.timing import percentile

from crmtasks.audit import codecs
from crmtasks.audit.month_counts import count_past_months
from crmtasks.audit.months import current_month
from crmtasks.audit.partitions import create_months
from crmtasks.pg import migrate
from crmtasks.settings import load_settings


# Settings of each variant a run can alternate (environment variables on top of the run's own).
_NOT_IDLE = {"CRMTASKS_AUDIT_MAINTENANCE_IDLE": "0"}
VARIANTS = {
    "default": {},
    # As before crmtasks.audit.priority: the pass and its server process at normal priority (the compressing
    # thread alone niced), unpaced.
    "unthrottled": {"CRMTASKS_AUDIT_MAINTENANCE_NICENESS": "0", "CRMTASKS_ARCHIVE_DUTY_PERCENT": "100", **_NOT_IDLE},
    "niced": {"CRMTASKS_AUDIT_MAINTENANCE_NICENESS": "10", "CRMTASKS_ARCHIVE_DUTY_PERCENT": "100", **_NOT_IDLE},
    "paced50": {"CRMTASKS_AUDIT_MAINTENANCE_NICENESS": "10", "CRMTASKS_ARCHIVE_DUTY_PERCENT": "50", **_NOT_IDLE},
    "niced19": {"CRMTASKS_AUDIT_MAINTENANCE_NICENESS": "19", "CRMTASKS_ARCHIVE_DUTY_PERCENT": "100", **_NOT_IDLE},
    # The defaults: niceness 10, paced at 70%, without SCHED_IDLE.
    "paced70": {"CRMTASKS_AUDIT_MAINTENANCE_NICENESS": "10", "CRMTASKS_ARCHIVE_DUTY_PERCENT": "70", **_NOT_IDLE},
    # SCHED_IDLE (CRMTASKS_AUDIT_MAINTENANCE_IDLE) with the default pacing, and unpaced.
    "idle": {"CRMTASKS_AUDIT_MAINTENANCE_IDLE": "1"},
    "idle-unpaced": {"CRMTASKS_AUDIT_MAINTENANCE_IDLE": "1", "CRMTASKS_ARCHIVE_DUTY_PERCENT": "100"},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in each month to archive")
    parser.add_argument("--rounds", type=int, default=2, help="maintenance runs (one month archived by each)")
    parser.add_argument("--variants", default="default",
                        help=f"comma-separated settings the rounds take in turn: {', '.join(VARIANTS)}")
    parser.add_argument("--writer-seconds", type=float, default=5.0, help="length of each baseline window")
    parser.add_argument("--writer-rate", type=float, default=500.0, help="writer inserts per second")
    parser.add_argument("--compression", choices=("zstd", "gzip"), default=codecs.WRITE_DEFAULT.name,
                        help="archive compression (gzip: as archives were before zstd)")
    parser.add_argument("--level", type=int, default=None, help="compression level (default: the codec's own)")
    args = parser.parse_args()
    variants = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = [name for name in variants if name not in VARIANTS]
    if unknown or not variants:
        print(f"bench_audit: --variants takes names among {', '.join(VARIANTS)} (got {args.variants!r})",
              file=sys.stderr)
        return 2
    if args.rounds < 1 or args.rows < 1:
        print("bench_audit: --rounds and --rows must be at least 1", file=sys.stderr)
        return 2
    args.variants = variants
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        print("bench_audit: set DATABASE_URL (a server where a database may be created)", file=sys.stderr)
        return 2
    server = BenchServer(server_url, f"audit_{uuid.uuid4().hex[:8]}")
    try:
        return _bench(server.create(), args)
    finally:
        server.drop_all()
        server.close()


# The oldest month archived is this many months before the current one, plus the rounds after it.
_FIRST_AGE = 14


def _bench(url: str, args) -> int:
    conn = migrate.connect(url)
    migrate.migrate(conn)
    current = current_month()
    create_months(conn, [current])
    started = time.perf_counter()
    for age in [1] + [_FIRST_AGE + k for k in range(args.rounds)]:
        fill_month(conn, current.plus(-age), args.rows)
    count_past_months(conn, current)  # every month counted once: each round recounts only the previous month
    print(f"filled {args.rounds + 1} months with {args.rows:,} rows each in {time.perf_counter() - started:.1f} s",
          file=sys.stderr)

    def recount_previous_month(index: int) -> None:
        with conn.cursor() as cur:
            cur.execute("DELETE FROM audit_month_counts WHERE month = %s", (current.plus(-1).first_day,))

    archive_dir = Path(tempfile.mkdtemp(prefix="bench-audit-"))
    codec = codecs.codec(args.compression, args.level)
    rounds = []
    for index in range(args.rounds):
        variant = args.variants[index % len(args.variants)]
        age = _FIRST_AGE + args.rounds - 1 - index  # the oldest month left: it alone is past retention
        environ = {"DATABASE_URL": url, "CRMTASKS_ARCHIVE_DIR": str(archive_dir),
                   "CRMTASKS_AUDIT_RETENTION_MONTHS": str(age - 1), **VARIANTS[variant]}
        rounds.append((variant, load_settings(environ)))
    try:
        done, samples = archive_rounds(url, rounds, args.writer_seconds, codec=codec, rate=args.writer_rate,
                                       between=recount_previous_month)
    finally:
        conn.close()
        for path in archive_dir.iterdir():
            path.unlink()
        archive_dir.rmdir()
    _print_report(done, samples, codec, args)
    return 0


def _print_report(done, samples, codec, args) -> None:
    base = baseline_latencies(done, samples)
    p99_base = percentile(base, 0.99)
    failures = [error for at, ms, error in samples if error is not None]
    print(f"writer: {args.writer_rate:g} inserts/s; baseline (every window pooled): {len(base)} inserts, "
          f"p50 {percentile(base, 0.5):.2f} ms, p99 {p99_base:.2f} ms")
    for index, one in enumerate(done[:-1]):
        window = latencies(samples, one.baseline)
        print(f"round {index + 1} ({one.variant}): baseline window p99 {percentile(window, 0.99):.2f} ms; archived "
              f"{one.stats['rows']:,} rows in {one.archive_s:.2f} s = {one.stats['rows'] / one.archive_s:,.0f} rows/s; "
              f"maintenance {one.run_s:.2f} s")
    closing = latencies(samples, done[-1].baseline)
    print(f"closing baseline window p99 {percentile(closing, 0.99):.2f} ms")
    for variant in args.variants:
        mine = [one for one in done[:-1] if one.variant == variant]
        if not mine:
            continue
        rows = sum(one.stats["rows"] for one in mine)
        archive_rate = rows / sum(one.archive_s for one in mine)
        run_rate = rows / sum(one.run_s for one in mine)
        during = [ms for one in mine for ms in latencies(samples, one.maintenance)]
        by_step: dict[str, list[float]] = {}
        step_s: dict[str, float] = {}
        for one in mine:
            for step, found in latencies_by_step(one, samples).items():
                by_step.setdefault(step, []).extend(found)
            for label, start, end in one.intervals:
                step_s[label] = step_s.get(label, 0.0) + end - start
        p99_during = percentile(during, 0.99)
        ratio = p99_during / p99_base
        print(f"\n== {variant}: {len(mine)} round(s), {rows:,} rows archived ({codec.label})")
        print(f"{'metric':<48}{'measured':>16}{'target':>14}  verdict")
        table = [
            (f"archive step rows/s (COPY->{codec.name}->verify)", f"{archive_rate:,.0f}", f">= {TARGET_ROWS_PER_S:,}",
             archive_rate >= TARGET_ROWS_PER_S),
            ("whole maintenance run rows/s", f"{run_rate:,.0f}", "(info)", None),
            ("writer p50 ms baseline / during", f"{percentile(base, 0.5):.2f} / {percentile(during, 0.5):.2f}",
             "(info)", None),
            ("writer p99 ms baseline", f"{p99_base:.2f}", "", None),
            ("writer p99 ms during maintenance", f"{p99_during:.2f}", f"<= {TARGET_P99_RATIO * p99_base:.2f}",
             ratio <= TARGET_P99_RATIO),
            ("writer p99 ratio during/baseline", f"{ratio:.2f}x", f"<= {TARGET_P99_RATIO:.0f}x",
             ratio <= TARGET_P99_RATIO),
            ("writer inserts baseline / during", f"{len(base)} / {len(during)}", "", None),
        ]
        for label, measured, target, ok in table:
            verdict = "" if ok is None else ("ok" if ok else "MISSED")
            print(f"{label:<48}{measured:>16}{target:>14}  {verdict}")
        print(f"  {'step':<22}{'seconds':>9}{'inserts':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'p99/base':>10}")
        for step in [label for label, _, _ in MAINTENANCE_STEPS] + ["between steps"]:
            found = by_step.get(step, [])
            if not found and step not in step_s:
                continue
            if not found:
                print(f"  {step:<22}{step_s.get(step, 0.0):>9.2f}{0:>9}")
                continue
            p99 = percentile(found, 0.99)
            print(f"  {step:<22}{step_s.get(step, 0.0):>9.2f}{len(found):>9}{percentile(found, 0.5):>9.2f}"
                  f"{p99:>9.2f}{max(found):>9.2f}{p99 / p99_base:>9.1f}x")
    print(f"\nfailed inserts: {len(failures)}")
    for failure in failures[:5]:
        print(f"  failure: {failure}")


if __name__ == "__main__":
    raise SystemExit(main())
