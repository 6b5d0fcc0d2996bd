"""Audit suite: archive throughput, a concurrent writer before versus during maintenance, bytes per row.

One month past retention, holding ``Scale.month_rows`` rows, is archived by
``crmtasks.audit.maintenance.run_maintenance`` (detach CONCURRENTLY, COPY to
zstd, fsync, read back and verify, drop) into a local directory (the
default store; an S3 store adds the network, which is not ours to measure)
while a writer process keeps inserting into audit_log with
``crmtasks.audit.record`` (one row per transaction, paced like an
application). The writer runs alone before and after: its latency then is the
baseline. Its latencies during maintenance are also given by the step
running when each insert started (detach, archive, count past months...).

Measured: rows/s of the archive step (COPY -> zstd -> fsync -> read back ->
verify) and of the whole retention run; the writer's p99 before and during,
and its failed inserts; bytes per row of the month in the table (heap,
indexes and TOAST) and in its archive file. Targets (issue 14): >= 600k
rows/s archived; writer p99 during <= 2x baseline and no insert failing.
The seed: "optimized storage".
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import time

import psycopg2
from psycopg2 import sql

from benchsuite.rows import Row
from benchsuite.timing import percentile
from crmtasks.audit import codecs, maintenance, record, retention
from crmtasks.audit.codecs import Codec
from crmtasks.audit.index_retirement import retire_replaced_indexes
from crmtasks.audit.months import Month, current_month
from crmtasks.audit.partition_indexes import index_partitions
from crmtasks.audit.partitions import create_months
from crmtasks.demo import AUDIT_HISTORY_MONTHS
from crmtasks.settings import Settings

TARGET_ROWS_PER_S = 600_000
TARGET_P99_RATIO = 2.0
WRITER_RATE = 500.0  # inserts per second: an application, not a load generator

# Realistic audit rows spread evenly over one month (%(start)s .. %(end)s).
FILL = """
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


def fill_month(conn, month: Month, rows: int) -> None:
    """Create ``month``'s partition if missing, insert ``rows`` rows into it, then VACUUM (FREEZE, ANALYZE) it,
    as for a month that has aged (hint bits and visibility map set). Leaves ``conn`` in autocommit."""
    conn.autocommit = True
    create_months(conn, [month])
    with conn.cursor() as cur:  # one statement: atomic on its own
        cur.execute(FILL, {"start": month.start, "end": month.end, "rows": rows})
        cur.execute(sql.SQL("VACUUM (FREEZE, ANALYZE) {}").format(sql.Identifier(month.partition_name)))


def write_audit_rows(url: str, stop, results, rate: float) -> None:
    """Writer process: insert audit rows one per transaction until ``stop``; put its (start time, ms, error) samples.

    A process of its own, like the application: a writer thread inside the
    benchmark would compete with the archiver for the GIL and slow both.
    Paced at ``rate`` inserts/s: a tight loop would measure CPU contention
    on a small machine rather than locking. Each sample carries the wall
    clock time its insert started, to be put in the maintenance step then running.
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
        at = time.time()
        started = time.perf_counter()
        try:
            record("update", "lead", n % 5000, actor_id=1 + n % 50, changes={"status": ["new", "qualified"]},
                   connection=conn, retention_months=12)
            error = None
        except Exception as failure:  # noqa: BLE001 - every failure is a finding
            error = f"{type(failure).__name__}: {failure}"
        samples.append((at, (time.perf_counter() - started) * 1000, error))
    conn.close()
    results.put(samples)


@contextlib.contextmanager
def timing_archive_step(timings: dict, codec: Codec | None = None):
    """While active, the archive step of retention records its seconds in ``timings["archive_s"]``
    (and compresses with ``codec`` when given; default: crmtasks' own, zstd)."""
    archive_step = retention.archive_detached

    def timed_archive(*args, **kwargs):
        if codec is not None:
            kwargs["codec"] = codec
        started = time.perf_counter()
        result = archive_step(*args, **kwargs)
        timings["archive_s"] = timings.get("archive_s", 0.0) + time.perf_counter() - started
        return result

    retention.archive_detached = timed_archive
    try:
        yield timings
    finally:
        retention.archive_detached = archive_step


# The maintenance steps the writer's latencies are put in: (label, module, function name).
MAINTENANCE_STEPS = (
    ("premake", maintenance, "create_months"),
    ("detach", retention, "_detach_concurrently"),
    ("finalize detach", retention, "_finalize_detach"),
    ("archive", retention, "archive_detached"),
    ("verify before drop", retention, "_verified_manifest"),
    ("drop", retention, "_drop_detached"),
    ("index partitions", maintenance, "index_partitions"),
    ("retire replaced indexes", maintenance, "retire_replaced_indexes"),
    ("count past months", maintenance, "count_past_months"),
)


@contextlib.contextmanager
def timing_steps(intervals: list, codec: Codec | None = None):
    """While active, each maintenance step appends ``(label, wall start, wall end)`` to ``intervals``
    (and the archive step compresses with ``codec`` when given; default: crmtasks' own, zstd)."""
    originals = [(module, name, getattr(module, name)) for _, module, name in MAINTENANCE_STEPS]

    def timed(label, step, name):
        def run_step(*args, **kwargs):
            if name == "archive_detached" and codec is not None:
                kwargs["codec"] = codec
            started = time.time()
            try:
                return step(*args, **kwargs)
            finally:
                intervals.append((label, started, time.time()))
        return run_step

    for (label, module, name), (_, _, step) in zip(MAINTENANCE_STEPS, originals):
        setattr(module, name, timed(label, step, name))
    try:
        yield intervals
    finally:
        for module, name, step in originals:
            setattr(module, name, step)


def step_of(at: float, intervals: list) -> str:
    """The label of the step running at wall time ``at`` ("between steps" when none)."""
    for label, started, ended in intervals:
        if started <= at <= ended:
            return label
    return "between steps"


@dataclasses.dataclass
class Round:
    """One baseline window and the maintenance run after it (``variant`` names the settings it ran with)."""

    variant: str
    baseline: tuple[float, float]
    maintenance: tuple[float, float]
    intervals: list
    stats: dict
    run_s: float

    @property
    def archive_s(self) -> float:
        return sum(end - start for label, start, end in self.intervals if label == "archive")


def archive_rounds(url: str, rounds: list[tuple[str, Settings]], writer_seconds: float, *,
                   codec: Codec | None = None, rate: float = WRITER_RATE, between=None) -> tuple[list[Round], list]:
    """Alternate baseline windows and maintenance runs under one writer process; return (rounds, writer samples).

    For each ``(variant, settings)``: the writer runs ``writer_seconds``
    alone (a baseline window), then ``between(index)`` prepares the run
    (its time belongs to neither window), then ``run_maintenance`` with
    ``settings``. A last baseline window closes the run, so drift of a busy
    machine shows in baselines before and after every run. Samples are
    ``(wall start, ms, error)``.
    """
    context = multiprocessing.get_context("spawn")
    stop, results = context.Event(), context.Queue()
    writer = context.Process(target=write_audit_rows, args=(url, stop, results, rate), daemon=True)
    writer.start()
    done: list[Round] = []
    try:
        time.sleep(1.0)  # connection and imports settle
        for index, (variant, settings) in enumerate(rounds):
            baseline_from = time.time()
            time.sleep(writer_seconds)
            baseline = (baseline_from, time.time())
            if between is not None:
                between(index)
            intervals: list = []
            during_from = time.time()
            started = time.perf_counter()
            conn = psycopg2.connect(url, application_name="bench-audit-maintenance")
            try:
                with timing_steps(intervals, codec):
                    stats = maintenance.run_maintenance(conn, settings)
            finally:
                conn.close()
            run_s = time.perf_counter() - started
            done.append(Round(variant, baseline, (during_from, time.time()), intervals, stats, run_s))
        closing_from = time.time()
        time.sleep(writer_seconds)
        done.append(Round("closing", (closing_from, time.time()), (0.0, 0.0), [], {}, 0.0))
        stop.set()
        samples = results.get(timeout=60)
    finally:
        stop.set()
        writer.join(30)
        if writer.is_alive():
            writer.kill()
    return done, samples


def latencies(samples: list, window: tuple[float, float]) -> list[float]:
    """Milliseconds of the successful inserts started in ``window`` (wall clock)."""
    return [ms for at, ms, error in samples if window[0] <= at <= window[1] and error is None]


def baseline_latencies(rounds: list[Round], samples: list) -> list[float]:
    """Every baseline window's latencies, pooled (before, between and after the maintenance runs)."""
    return [ms for one in rounds for ms in latencies(samples, one.baseline)]


def latencies_by_step(one: Round, samples: list) -> dict[str, list[float]]:
    """The latencies of ``one``'s maintenance run, by the step running when each insert started."""
    found: dict[str, list[float]] = {}
    for at, ms, error in samples:
        if error is None and one.maintenance[0] <= at <= one.maintenance[1]:
            found.setdefault(step_of(at, one.intervals), []).append(ms)
    return found


def table_bytes(conn, month: Month) -> int:
    """Bytes the month's partition takes in the database: heap, indexes and TOAST."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_total_relation_size(%s::regclass)", (sql.Identifier(month.partition_name).as_string(conn),))
        return cur.fetchone()[0]


def archive_with_writer(url: str, settings: Settings, writer_seconds: float, codec: Codec | None = None,
                        rate: float = WRITER_RATE) -> dict:
    """Run maintenance once while a writer process inserts; return its stats, timings and the writer's samples.

    The writer (``rate`` inserts/s) runs ``writer_seconds`` alone (the
    baseline), then during the whole maintenance run, then alone again (the
    baseline pools both windows, so a machine getting busier or quieter
    during the run shows less); ``codec`` is the archive's compression
    (default: crmtasks' own, zstd). ``by_step`` holds the latencies during
    maintenance by the step running when each insert started.
    """
    done, samples = archive_rounds(url, [("maintenance", settings)], writer_seconds, codec=codec, rate=rate)
    one = done[0]
    return {"stats": one.stats, "run_s": one.run_s, "archive_s": one.archive_s,
            "baseline_ms": baseline_latencies(done, samples), "during_ms": latencies(samples, one.maintenance),
            "by_step": latencies_by_step(one, samples),
            "failures": [error for at, ms, error in samples if error is not None]}


def run(conn, url: str, settings: Settings, month_rows: int, writer_seconds: float) -> tuple[list[Row], dict]:
    """Fill a month older than the seeded ones, archive it under a writer, and return (rows, raw figures).

    The month is two months before the seed's first, and retention is set
    so that it alone is past retention: the seeded months stay.
    """
    month = current_month().plus(-(AUDIT_HISTORY_MONTHS + 2))
    fill_month(conn, month, month_rows)
    # The one-time index work after a migration (a replaced index retired) is done before the windows: the writer
    # is measured against a daily run of a log that is up to date, as the README's figures describe.
    index_partitions(conn)
    retire_replaced_indexes(conn)
    in_table = table_bytes(conn, month)
    only_that_month = dataclasses.replace(settings, audit_retention_months=AUDIT_HISTORY_MONTHS + 1)
    result = archive_with_writer(url, only_that_month, writer_seconds)
    stats = result["stats"]
    if stats["rows"] != month_rows or stats["archived"] != 1:
        raise RuntimeError(f"expected one month of {month_rows:,} rows archived, got {stats}")
    archive_rate = stats["rows"] / result["archive_s"]
    base, during, failures = result["baseline_ms"], result["during_ms"], result["failures"]
    p99_base, p99_during = percentile(base, 0.99), percentile(during, 0.99)
    table_per_row, archive_per_row = in_table / stats["rows"], stats["bytes"] / stats["rows"]
    raw = {"month": str(month), "rows": stats["rows"], "table_bytes": in_table, "archive_bytes": stats["bytes"],
           "archive_s": result["archive_s"], "retention_run_s": result["run_s"], "stats": stats,
           "writer": {"baseline_inserts": len(base), "during_inserts": len(during), "failures": failures[:20],
                      "p50_baseline_ms": percentile(base, 0.5), "p50_during_ms": percentile(during, 0.5),
                      "p99_baseline_ms": p99_base, "p99_during_ms": p99_during, "rate_per_s": WRITER_RATE,
                      "by_step": {step: {"inserts": len(found), "p50_ms": percentile(found, 0.5),
                                         "p99_ms": percentile(found, 0.99), "max_ms": max(found)}
                                  for step, found in result["by_step"].items()}}}
    worst = sorted(raw["writer"]["by_step"].items(), key=lambda item: -item[1]["p99_ms"])[:3]
    by_step = ", ".join(f"{step} {figures['p99_ms']:.2f} ms ({figures['inserts']})" for step, figures in worst)
    rows = [
        Row(suite="audit", metric=f"archive step (COPY, {codecs.WRITE_DEFAULT.name}, fsync, read back, verify)",
            unit="rows/s",
            baseline=None, ours=archive_rate, target=f">= {TARGET_ROWS_PER_S:,} rows/s",
            met=archive_rate >= TARGET_ROWS_PER_S,
            detail=(f"{stats['rows']:,} rows of {month} in {result['archive_s']:.2f} s; whole retention run "
                    f"(detach, archive, drop) {result['run_s']:.2f} s = {stats['rows'] / result['run_s']:,.0f} rows/s")),
        Row(suite="audit", metric="writer p99 latency, before vs during maintenance", unit="ms", baseline=p99_base,
            ours=p99_during, target=f"<= {TARGET_P99_RATIO:g}x before", met=p99_during <= TARGET_P99_RATIO * p99_base,
            target_ratio=TARGET_P99_RATIO,
            detail=(f"p50 {percentile(base, 0.5):.2f} vs {percentile(during, 0.5):.2f} ms; "
                    f"{len(base)} inserts before and after, {len(during)} during, at {WRITER_RATE:g}/s, one per "
                    f"transaction; worst steps by p99 (inserts): {by_step}")),
        Row(suite="audit", metric="writer inserts failed during maintenance", unit="count", baseline=None,
            ours=float(len(failures)), target="0", met=not failures, detail="; ".join(failures[:3])),
    ]
    rows.append(Row(
        suite="audit", metric="storage of an archived month, bytes per row: table vs archive",
        unit="bytes/row", baseline=table_per_row, ours=archive_per_row,
        target="smaller than in the table, and the month gone from the database", target_ratio=1.0,
        met=archive_per_row < table_per_row and stats["dropped"] == 1,
        detail=(f"{month}: {in_table:,} bytes in the table (heap, indexes, TOAST) vs {stats['bytes']:,} in its "
                f"verified {codecs.WRITE_DEFAULT.label} archive; query performance: the (a)-(c) rows of "
                f"audit_queries")))
    return rows, raw
