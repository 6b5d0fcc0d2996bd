#!/usr/bin/env python3
"""The audit log's everyday questions, partitioned vs the same rows unpartitioned, at a size of your choice.

    python scripts/bench_audit_queries.py [--rows 1500000] [--repeat 40]

The audit query suite of ``scripts/bench`` (benchsuite/audit_queries.py)
without the CRM and the archive suite: makes a database of its own on the
server of DATABASE_URL (created and dropped here), seeds --rows demo audit
rows over 24 months, vacuums, then asks questions (a)-(c) of both sides in
turn and prints one line per question. For quick probes on a shared
machine; the figures of record come from ``scripts/bench``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

from _venv import use_project_venv  # scripts/_venv.py: this script's directory is first on sys.path

use_project_venv()  # a fresh clone's python3 lacks psycopg2: re-run under the project's virtualenv

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from benchsuite import audit_queries
from benchsuite.dataset import BenchServer
from benchsuite.timing import calibration_ms

from crmtasks.demo import seed_audit
from crmtasks.pg import migrate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_500_000, help="audit rows over 24 months (the large scale: 5M)")
    parser.add_argument("--repeat", type=int, default=40, help="calls a side for (b); a quarter of it for (a), (c)")
    args = parser.parse_args()
    if args.rows < 1 or args.repeat < 4:
        print("bench_audit_queries: --rows must be 1 or more and --repeat 4 or more", file=sys.stderr)
        return 2
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        print("bench_audit_queries: set DATABASE_URL (a server where a database may be created)", file=sys.stderr)
        return 2
    server = BenchServer(server_url, f"audit_queries_{uuid.uuid4().hex[:8]}")
    try:
        return _bench(server.create(), args)
    finally:
        server.drop_all()
        server.close()


def _bench(url: str, args) -> int:
    conn = migrate.connect(url)
    try:
        migrate.migrate(conn)
        started = time.perf_counter()
        seed_audit(conn, args.rows, 42, defer_indexes=True)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE")
        print(f"seeded {args.rows:,} audit rows in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        speed_before = calibration_ms(conn)
        rows, raw = audit_queries.run(conn, args.repeat)
        speed_after = calibration_ms(conn)
    finally:
        conn.close()
    prepared = raw["prepared"]
    print(f"both sides' indexes besides the primary key: {'; '.join(prepared['indexes'])} "
          f"(audit_log's partition indexes built: {prepared['partition_indexes_built']}, "
          f"replaced indexes retired: {prepared['indexes_retired']})")
    for row in rows:
        verdict = "" if row.met is None else ("met" if row.met else "MISSED")
        print(f"{row.metric}: {row.baseline:.2f} vs {row.ours:.2f} {row.unit} ({row.target}) {verdict}")
        print(f"    {row.detail}")
    print(f"speed check (SELECT count(*) FROM generate_series(1, 1000000), median of 5): {speed_before:.0f} ms before, "
          f"{speed_after:.0f} ms after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
