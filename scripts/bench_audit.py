#!/usr/bin/env python3
"""Benchmark of the audit archive: throughput, and what it does to a concurrent writer.

    python scripts/bench_audit.py [--rows 1000000] [--writer-seconds 5] [--compression zstd|gzip] [--level N]

Makes a database of its own on the server of DATABASE_URL (created and
dropped here), fills one month past retention with --rows realistic rows,
then:
1. baseline: a writer process inserts into audit_log (crmtasks.audit.record,
   one row per transaction, --writer-rate per second) for --writer-seconds;
2. maintenance: the same writer keeps inserting while run_maintenance()
   detaches, archives (COPY -> zstd -> fsync -> read back -> verify),
   and drops the month.
Prints archive throughput (rows/s of the archive step, and of the whole
retention run) and the writer's p50/p99 before vs during, against the
targets (>= 500k rows/s; p99 during <= 3x baseline; no failed insert).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from _venv import use_project_venv  # scripts/_venv.py: this script's directory is first on sys.path

use_project_venv()  # a fresh clone's python3 lacks psycopg2: re-run under the project's virtualenv

import psycopg2

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from benchsuite.audit import (
    TARGET_P99_RATIO,
    TARGET_ROWS_PER_S,
    archive_with_writer,
    fill_month,
)
from benchsuite.timing import percentile

from crmtasks.audit import codecs
from crmtasks.audit.months import current_month
from crmtasks.audit.partitions import create_months
from crmtasks.pg import migrate
from crmtasks.settings import load_settings


def _with_database(url: str, name: str) -> str:
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the month to archive")
    parser.add_argument("--writer-seconds", type=float, default=5.0, help="length of the baseline")
    parser.add_argument("--writer-rate", type=float, default=500.0, help="writer inserts per second")
    parser.add_argument("--compression", choices=("zstd", "gzip"), default=codecs.WRITE_DEFAULT.name,
                        help="archive compression (gzip: as archives were before zstd)")
    parser.add_argument("--level", type=int, default=None, help="compression level (default: the codec's own)")
    args = parser.parse_args()
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        print("bench_audit: set DATABASE_URL (a server where a database may be created)", file=sys.stderr)
        return 2
    name = f"crmtasks_bench_audit_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(server_url, name)
    try:
        return _bench(url, args)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _bench(url: str, args) -> int:
    conn = migrate.connect(url)
    migrate.migrate(conn)
    month = current_month().plus(-14)
    create_months(conn, [current_month()])
    started = time.perf_counter()
    fill_month(conn, month, args.rows)
    conn.close()
    print(f"filled {month} with {args.rows:,} rows in {time.perf_counter() - started:.1f} s", file=sys.stderr)

    archive_dir = Path(tempfile.mkdtemp(prefix="bench-audit-"))
    settings = load_settings({"DATABASE_URL": url, "CRMTASKS_ARCHIVE_DIR": str(archive_dir)})
    codec = codecs.codec(args.compression, args.level)
    result = archive_with_writer(url, settings, args.writer_seconds, codec=codec, rate=args.writer_rate)
    stats, run_s, archive_s = result["stats"], result["run_s"], result["archive_s"]
    base, during, failures = result["baseline_ms"], result["during_ms"], result["failures"]
    archive_rate = stats["rows"] / archive_s
    run_rate = stats["rows"] / run_s
    p99_base, p99_during = percentile(base, 0.99), percentile(during, 0.99)
    ratio = p99_during / p99_base
    print(f"archived {stats['rows']:,} rows into {stats['bytes']:,} bytes ({codec.label}); "
          f"archive step {archive_s:.2f} s, whole retention run {run_s:.2f} s")
    print(f"{'metric':<44}{'measured':>14}{'target':>14}  verdict")
    rows = [
        (f"archive step rows/s (COPY->{codec.name}->verify)", f"{archive_rate:,.0f}", f">= {TARGET_ROWS_PER_S:,}",
         archive_rate >= TARGET_ROWS_PER_S),
        ("whole retention run rows/s (+detach, drop)", f"{run_rate:,.0f}", "(info)", None),
        ("writer p50 ms baseline / during", f"{percentile(base, 0.5):.2f} / {percentile(during, 0.5):.2f}",
         "(info)", None),
        ("writer p99 ms baseline", f"{p99_base:.2f}", "", None),
        ("writer p99 ms during maintenance", f"{p99_during:.2f}", f"<= {TARGET_P99_RATIO * p99_base:.2f}",
         ratio <= TARGET_P99_RATIO),
        ("writer p99 ratio during/baseline", f"{ratio:.2f}x", f"<= {TARGET_P99_RATIO:.0f}x", ratio <= TARGET_P99_RATIO),
        ("writer inserts baseline / during", f"{len(base)} / {len(during)}", "", None),
        ("failed inserts", f"{len(failures)}", "0", not failures),
    ]
    for label, measured, target, ok in rows:
        verdict = "" if ok is None else ("ok" if ok else "MISSED")
        print(f"{label:<44}{measured:>14}{target:>14}  {verdict}")
    for failure in failures[:5]:
        print(f"  failure: {failure}")
    for path in archive_dir.iterdir():
        path.unlink()
    archive_dir.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
