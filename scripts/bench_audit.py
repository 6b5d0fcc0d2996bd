"""Benchmark of the audit archive: throughput, and what it does to a concurrent writer.

    python scripts/bench_audit.py [--rows 1000000] [--writer-seconds 5] [--level 1]

Makes a database of its own on the server of DATABASE_URL (created and
dropped here), fills one month past retention with --rows realistic rows,
then:
1. baseline: a writer process inserts into audit_log (crmtasks.audit.record,
   one row per transaction, --writer-rate per second) for --writer-seconds;
2. maintenance: the same writer keeps inserting while run_maintenance()
   detaches, archives (COPY -> gzip -> fsync -> read back -> verify),
   and drops the month.
Prints archive throughput (rows/s of the archive step, and of the whole
retention run) and the writer's p50/p99 before vs during, against the
targets (>= 500k rows/s; p99 during <= 3x baseline; no failed insert).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crmtasks import migrate  # noqa: E402
from crmtasks.audit import archive_file, record, retention  # noqa: E402
from crmtasks.audit.maintenance import run_maintenance  # noqa: E402
from crmtasks.audit.months import current_month  # noqa: E402
from crmtasks.audit.partitions import create_months  # noqa: E402
from crmtasks.settings import load_settings  # noqa: E402

TARGET_ROWS_PER_S = 500_000
TARGET_P99_RATIO = 3.0

_FILL = """
INSERT INTO audit_log (occurred_at, actor_id, action, entity, entity_id, changes, ip_address)
SELECT %(start)s::timestamptz + (%(end)s::timestamptz - %(start)s::timestamptz) * (g - 0.5) / %(rows)s,
       CASE WHEN g %% 20 = 0 THEN NULL ELSE 1 + g %% 200 END,
       (ARRAY['update', 'update', 'update', 'create', 'view', 'login', 'export', 'delete'])[1 + g %% 8],
       (ARRAY['lead', 'deal', 'contact', 'account'])[1 + (g / 8) %% 4],
       1 + hashint4(g::int) & 65535,
       CASE WHEN g %% 8 < 3 THEN jsonb_build_object('field', (ARRAY['status', 'stage', 'owner_id', 'amount'])[1 + g %% 4],
                                                  'from', 'new', 'to', 'qualified')
            WHEN g %% 8 = 3 THEN jsonb_build_object('source', 'web')
            ELSE '{}'::jsonb END,
       ('10.' || g %% 256 || '.' || (g / 256) %% 256 || '.' || (g / 65536) %% 256)::inet
FROM generate_series(1, %(rows)s) AS g
"""


def _with_database(url: str, name: str) -> str:
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def _write(url: str, stop, results, rate: float) -> None:
    """Writer process: insert audit rows one per transaction until ``stop``; send (time, ms, error) samples.

    A process of its own, like the application: a writer thread inside this
    process would compete with the archiver for the GIL and slow both. Paced
    at ``rate`` inserts/s (an application, not a load generator): a tight loop
    would measure CPU contention on a small machine rather than locking.
    """
    conn = psycopg2.connect(url, application_name="bench-audit-writer")
    conn.autocommit = True
    samples = []
    n = 0
    interval = 1.0 / rate
    next_at = time.perf_counter()
    while not stop.is_set():
        n += 1
        next_at += interval
        pause = next_at - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        started = time.perf_counter()
        try:
            record("update", "lead", n % 5000, actor_id=1 + n % 50, changes={"status": ["new", "qualified"]},
                   connection=conn, retention_months=12)
            error = None
        except Exception as failure:  # noqa: BLE001 - every failure is a finding
            error = f"{type(failure).__name__}: {failure}"
        samples.append((time.time(), (time.perf_counter() - started) * 1000, error))
    conn.close()
    results.put(samples)


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) >= 2 else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the month to archive")
    parser.add_argument("--writer-seconds", type=float, default=5.0, help="length of the baseline")
    parser.add_argument("--writer-rate", type=float, default=500.0, help="writer inserts per second")
    parser.add_argument("--level", type=int, default=archive_file.GZIP_LEVEL, help="gzip level")
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
    create_months(conn, [month, current_month()])
    started = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute(_FILL, {"start": month.start, "end": month.end, "rows": args.rows})
    conn.commit()
    conn.autocommit = True
    with conn.cursor() as cur:  # hint bits and visibility map set, as for a month that has aged
        cur.execute(f'VACUUM (FREEZE, ANALYZE) "{month.partition_name}"')
    print(f"filled {month} with {args.rows:,} rows in {time.perf_counter() - started:.1f} s", file=sys.stderr)

    archive_dir = Path(tempfile.mkdtemp(prefix="bench-audit-"))
    settings = load_settings({"DATABASE_URL": url, "CRMTASKS_ARCHIVE_DIR": str(archive_dir)})
    timings = {}
    archive_step = retention.archive_detached

    def timed_archive(*a, **k):
        t0 = time.perf_counter()
        result = archive_step(*a, level=args.level, **k)
        timings["archive_s"] = time.perf_counter() - t0
        return result

    retention.archive_detached = timed_archive

    context = multiprocessing.get_context("spawn")
    stop, results = context.Event(), context.Queue()
    writer = context.Process(target=_write, args=(url, stop, results, args.writer_rate))
    writer.start()
    time.sleep(1.0)  # connection and imports settle
    baseline_from = time.time()
    time.sleep(args.writer_seconds)
    during_from = time.time()
    t0 = time.perf_counter()
    maintenance_conn = psycopg2.connect(url, application_name="bench-audit-maintenance")
    stats = run_maintenance(maintenance_conn, settings)
    run_s = time.perf_counter() - t0
    during_to = time.time()
    time.sleep(0.5)
    stop.set()
    samples = results.get(timeout=60)
    writer.join()
    maintenance_conn.close()
    conn.close()

    base = [ms for at, ms, error in samples if baseline_from <= at < during_from and error is None]
    during = [ms for at, ms, error in samples if during_from <= at <= during_to and error is None]
    failures = [error for at, ms, error in samples if error is not None]
    archive_rate = stats["rows"] / timings["archive_s"]
    run_rate = stats["rows"] / run_s
    p99_base, p99_during = _percentile(base, 0.99), _percentile(during, 0.99)
    ratio = p99_during / p99_base
    print(f"archived {stats['rows']:,} rows into {stats['bytes']:,} bytes (gzip-{args.level}); "
          f"archive step {timings['archive_s']:.2f} s, whole retention run {run_s:.2f} s")
    print(f"{'metric':<44}{'measured':>14}{'target':>14}  verdict")
    rows = [
        ("archive step rows/s (COPY->gzip->fsync->verify)", f"{archive_rate:,.0f}", f">= {TARGET_ROWS_PER_S:,}",
         archive_rate >= TARGET_ROWS_PER_S),
        ("whole retention run rows/s (+detach, drop)", f"{run_rate:,.0f}", "(info)", None),
        ("writer p50 ms baseline / during", f"{_percentile(base, 0.5):.2f} / {_percentile(during, 0.5):.2f}",
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
