"""Load suite: the library API called from many threads and processes at once, against a connection per thread.

Four calls a CRM's web server makes (a one-filter search, a two-filter
search, a report, ``can_access``) are each made as fast as possible by 1,
8 and 40 threads of this process and by 4 processes of 10 threads, for a
fixed time per cell. Two sides, in turn, with the same arguments:

- ours: the call as a library user makes it; it borrows a connection from
  the process's pool (``CRMTASKS_DB_POOL_SIZE``, 20 by default) and gives it
  back, so 40 threads share 20 connections and wait their turn;
- baseline: the same call with ``connection=`` a plain psycopg2 connection
  the thread opened for itself (autocommit): what a competent engineer
  writes without a pool, one server connection per thread.

Each cell counts completed calls per second, p50 and p99 of each call's
time, and errors (by type; none is retried). The loop is closed: every
thread calls again as soon as its call returns, so with more threads than
cores a call's time includes its wait for the CPU (mean time = threads /
throughput). Targets (issue 17): no error anywhere; for every call, the
throughput at 40 threads at least that at 8; ``can_access`` p99 at 40
threads <= 5 ms. The job side (``benchsuite.load_jobs``) sends 1,000
run-now messages to real workers.
"""

from __future__ import annotations

import collections
import dataclasses
import multiprocessing
import random
import threading
import time
from collections.abc import Callable

import psycopg2

from benchsuite.rows import Row
from benchsuite.timing import ms_since, summary

MODES = (("1 thread", 1, 1), ("8 threads", 1, 8), ("40 threads", 1, 40), ("4 processes x 10 threads", 4, 10))
PACED = "40 threads, paced"  # can_access only: calls start on a schedule, at half the 8-thread throughput
CALLS = ("search, one filter", "search, two filters", "report (revenue per month)", "can_access")
TARGET_CAN_ACCESS_P99_MS = 5.0
PAIRS = 2_000
# Seconds the callers of a cell may take to get ready (connect, warm up) before it is abandoned.
_START_TIMEOUT_S = 300
# Untimed calls each thread makes first: a new PostgreSQL session's first statements fill its caches.
_WARM_UP_CALLS = 3


@dataclasses.dataclass(frozen=True)
class Cases:
    """The arguments the calls rotate through, read from the data (picklable, for the child processes)."""

    industries: tuple[str, ...]
    statuses: tuple[str, ...]
    pairs: tuple[tuple[int, int], ...]  # (active user, lead)


def cases_from(conn, seed_value: int) -> Cases:
    with conn.cursor() as cur:
        cur.execute("SELECT industry FROM leads WHERE industry IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC, 1")
        industries = tuple(row[0] for row in cur.fetchall())
        cur.execute("SELECT status FROM leads GROUP BY 1 ORDER BY count(*) DESC, 1")
        statuses = tuple(row[0] for row in cur.fetchall())
        cur.execute("SELECT id FROM users WHERE is_active ORDER BY id")
        users = [row[0] for row in cur.fetchall()]
        cur.execute("SELECT min(id), max(id) FROM leads")
        first, last = cur.fetchone()
    rng = random.Random(seed_value)
    return Cases(industries, statuses, tuple((rng.choice(users), rng.randint(first, last)) for _ in range(PAIRS)))


def call_of(name: str, cases: Cases) -> Callable[[int, object], object]:
    """The ``name`` call as ``call(i, connection)``: the i-th arguments, on ``connection`` (None: ours, pooled)."""
    from crmtasks import reports, sharing
    from crmtasks.search import faceted_search

    industries, statuses, pairs = cases.industries, cases.statuses, cases.pairs
    if name == "search, one filter":
        return lambda i, conn: faceted_search("leads", {"industry": industries[i % len(industries)]}, connection=conn)
    if name == "search, two filters":
        return lambda i, conn: faceted_search(
            "leads", {"industry": industries[i % len(industries)], "status": statuses[i % len(statuses)]},
            connection=conn)
    if name == "report (revenue per month)":
        return lambda i, conn: reports.revenue(grain="month", connection=conn)
    if name == "can_access":
        def check(i, conn):
            user, lead = pairs[i % len(pairs)]
            return sharing.can_access(user, "leads", lead, connection=conn)
        return check
    raise ValueError(f"unknown call {name!r}")


def warm_local_caches(cases: Cases) -> None:
    """One check per user: this process's memory tier of compiled visibilities is then warm, as in production."""
    from crmtasks import sharing

    for user in sorted({user for user, _ in cases.pairs}):
        sharing.can_access(user, "leads", cases.pairs[0][1])


def run_cell(call: Callable, threads: int, seconds: float, url: str | None, rate: float | None = None) -> dict:
    """``threads`` threads make ``call`` for ``seconds``; with ``url``, each on a psycopg2 connection of its own.

    Closed loop by default (each thread calls again as soon as its call
    returns). With ``rate`` (calls per second, all threads together), each
    thread starts its calls on a fixed schedule instead, as requests arrive
    at a web server, and a call's time runs from its scheduled start (a late
    start counts as waiting).

    Returns calls, elapsed_s, latencies_ms (of calls that returned) and errors (type -> count, first message).
    """
    start = threading.Barrier(threads + 1)
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: collections.Counter = collections.Counter()
    first_error: list[str] = []

    def count(error: Exception) -> None:
        errors[f"{type(error).__module__}.{type(error).__name__}"] += 1
        first_error[:] = first_error or [(str(error).strip().splitlines() or [""])[0][:200]]

    def caller(index: int) -> None:
        conn, ready = None, False
        try:
            if url:
                conn = psycopg2.connect(url, application_name="crmtasks-bench-baseline")
                conn.autocommit = True
            for warm_up in range(_WARM_UP_CALLS):  # a new session's catalog caches, the pool
                call(index + warm_up * threads, conn)
            ready = True
        except Exception as error:  # noqa: BLE001 - a caller that could not start is an error too
            count(error)
        try:
            start.wait(timeout=_START_TIMEOUT_S)
            if ready:
                _call_until(call, conn, index, threads, seconds, rate, latencies[index], count)
        finally:
            if conn is not None:
                conn.close()

    if not url:
        _fill_pool(threads)
    workers = [threading.Thread(target=caller, args=(index,), daemon=True) for index in range(threads)]
    for worker in workers:
        worker.start()
    start.wait(timeout=_START_TIMEOUT_S)
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    flat = [latency for per_thread in latencies for latency in per_thread]
    return {"calls": len(flat), "elapsed_s": time.perf_counter() - began, "latencies_ms": flat,
            "errors": dict(errors), "first_error": first_error[0] if first_error else ""}


def _call_until(call: Callable, conn, index: int, threads: int, seconds: float, rate: float | None,
                latencies: list[float], count: Callable) -> None:
    """One thread's calls for ``seconds``: its share of the arguments, closed loop or on ``rate``'s schedule."""
    deadline, i = time.perf_counter() + seconds, index
    interval = threads / rate if rate else 0.0
    scheduled = time.perf_counter() + interval * index / threads  # threads spread over one interval
    while time.perf_counter() < deadline:
        began = time.perf_counter()
        if rate:
            if began < scheduled:
                time.sleep(scheduled - began)
            began, scheduled = scheduled, scheduled + interval
        try:
            call(i, conn)
            latencies.append(ms_since(began))
        except Exception as error:  # noqa: BLE001 - every error is counted, none retried
            count(error)
        i += threads


def _fill_pool(callers: int) -> None:
    """Open as many pooled connections as ``callers`` can use at once, as in a server that has run a while."""
    from crmtasks.pg import db
    from crmtasks.settings import get_settings

    size = min(callers, get_settings().db_pool_size)
    together = threading.Barrier(size)

    def hold() -> None:
        with db.borrowed_connection():
            together.wait(timeout=_START_TIMEOUT_S)

    holders = [threading.Thread(target=hold, daemon=True) for _ in range(size)]
    for holder in holders:
        holder.start()
    for holder in holders:
        holder.join()


def _close_idle_pool() -> None:
    """Close the pool's idle connections, so the next cell's connections fit in max_connections."""
    from crmtasks.pg import db

    if db.database.obj is not None:
        db.database.obj.close_idle()


def _cell_plan() -> list[tuple[str, bool]]:
    """(call, baseline?) in the order the cells run: per call, ours and baseline in turn, alternating who goes first."""
    return [(name, baseline) for index, name in enumerate(CALLS)
            for baseline in ((False, True) if index % 2 == 0 else (True, False))]


def _child(barrier, sender, cases: Cases, threads: int, seconds: float, url: str) -> None:
    """One of the 4 processes: every cell of the plan, in step with its siblings; results sent back."""
    try:
        from crmtasks.pg import db

        db.bind()
        warm_local_caches(cases)
        results = []
        for name, baseline in _cell_plan():
            _close_idle_pool()  # a side's connections never add up with the other's
            barrier.wait(timeout=_START_TIMEOUT_S)
            results.append(run_cell(call_of(name, cases), threads, seconds, url if baseline else None))
        sender.send((True, results))
    except BaseException as error:  # noqa: BLE001 - reported by the parent
        barrier.abort()
        sender.send((False, f"{type(error).__name__}: {error}"))
    finally:
        sender.close()


def run_processes(cases: Cases, processes: int, threads: int, seconds: float, url: str) -> list[dict]:
    """The whole plan in ``processes`` spawned processes at once; one merged result per cell of ``_cell_plan``."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    pipes = [context.Pipe(duplex=False) for _ in range(processes)]
    children = [context.Process(target=_child, args=(barrier, sender, cases, threads, seconds, url), daemon=True)
                for _, sender in pipes]
    for child in children:
        child.start()
    outcomes = []
    for (receiver, sender), child in zip(pipes, children):
        sender.close()
        if not receiver.poll(len(_cell_plan()) * (_START_TIMEOUT_S + 2 * seconds)):
            child.kill()
            raise TimeoutError("a load process did not finish in time")
        outcomes.append(receiver.recv())
        child.join(60)
    failed = [value for ok, value in outcomes if not ok]
    if failed:
        raise RuntimeError(f"a load process failed: {failed[0]}")
    merged = []
    for cell in zip(*(value for _, value in outcomes)):
        errors: collections.Counter = collections.Counter()
        for part in cell:
            errors.update(part["errors"])
        merged.append({"calls": sum(part["calls"] for part in cell),
                       "elapsed_s": max(part["elapsed_s"] for part in cell),
                       "latencies_ms": [latency for part in cell for latency in part["latencies_ms"]],
                       "errors": dict(errors), "first_error": next((p["first_error"] for p in cell if p["first_error"]), "")})
    return merged


def _figures(name: str, mode: str, side: str, result: dict) -> dict:
    """A cell's figures for the report: throughput, p50, p99, errors."""
    times = summary(result["latencies_ms"]) if result["latencies_ms"] else {"p50": None, "p99": None}
    return {"call": name, "mode": mode, "side": side, "calls": result["calls"],
            "calls_per_s": result["calls"] / result["elapsed_s"] if result["elapsed_s"] else 0.0,
            "p50_ms": times["p50"], "p99_ms": times["p99"], "errors": sum(result["errors"].values()),
            "error_types": result["errors"], "first_error": result["first_error"]}


def measure(url: str, cases: Cases, seconds: float) -> list[dict]:
    """Every cell: the in-process modes first, then the processes; a figures dict per cell."""
    warm_local_caches(cases)
    cells = []
    sides = {}
    for name, baseline in _cell_plan():
        sides.setdefault(name, []).append(baseline)
    for name, order in sides.items():
        call = call_of(name, cases)
        for mode, processes, threads in MODES:
            for baseline in order if processes == 1 else ():
                _close_idle_pool()  # a side's connections never add up with the other's
                result = run_cell(call, threads, seconds, url if baseline else None)
                cells.append(_figures(name, mode, "baseline" if baseline else "ours", result))
    # can_access as a web server's threads make it: requests arriving at half the rate 8 threads sustain.
    rate = _cell(cells, "can_access", "8 threads", "ours")["calls_per_s"] / 2
    for baseline in (False, True):
        _close_idle_pool()
        result = run_cell(call_of("can_access", cases), 40, seconds, url if baseline else None, rate=rate)
        cells.append(dict(_figures("can_access", PACED, "baseline" if baseline else "ours", result), rate=rate))
    _close_idle_pool()  # the children's connections, not this process's idle ones, count from here
    mode, processes, threads = MODES[-1]
    for (name, baseline), result in zip(_cell_plan(), run_processes(cases, processes, threads, seconds, url)):
        cells.append(_figures(name, mode, "baseline" if baseline else "ours", result))
    return cells


def _cell(cells: list[dict], name: str, mode: str, side: str) -> dict:
    return next(cell for cell in cells if (cell["call"], cell["mode"], cell["side"]) == (name, mode, side))


def rows_from(cells: list[dict], pool_size: int, seconds: float) -> list[Row]:
    """The verdicts: no error anywhere; per call, 40 threads at least as fast as 8; can_access p99 at 40 threads."""
    ours = [cell for cell in cells if cell["side"] == "ours"]
    errors = sum(cell["errors"] for cell in ours)
    failing = sorted({f"{cell['call']} at {cell['mode']}: {cell['first_error']}" for cell in ours if cell["errors"]})
    rows = [Row(suite="load", metric=f"errors, every call and concurrency (pool of {pool_size} per process)",
                unit="count", baseline=float(sum(cell["errors"] for cell in cells if cell["side"] == "baseline")),
                ours=float(errors), target="0", met=errors == 0,
                detail="; ".join(failing[:3]) or f"{sum(cell['calls'] for cell in ours):,} calls, {seconds:g} s per cell")]
    for name in CALLS:
        at_8, at_40 = _cell(cells, name, "8 threads", "ours"), _cell(cells, name, "40 threads", "ours")
        base_40 = _cell(cells, name, "40 threads", "baseline")
        rows.append(Row(
            suite="load", metric=f"{name}: throughput at 40 threads (pool {pool_size})", unit="calls/s", baseline=None,
            ours=at_40["calls_per_s"], target=f">= at 8 threads ({at_8['calls_per_s']:,.0f} calls/s)",
            met=at_40["calls_per_s"] >= at_8["calls_per_s"],
            detail=(f"a psycopg2 connection per thread: {base_40['calls_per_s']:,.0f} calls/s at 40 threads, "
                    f"{_cell(cells, name, '8 threads', 'baseline')['calls_per_s']:,.0f} at 8")))
    check_40, base_40 = _cell(cells, "can_access", "40 threads", "ours"), _cell(cells, "can_access", "40 threads", "baseline")
    rows.append(Row(
        suite="load", metric="can_access p99 at 40 threads, connection per thread vs pooled", unit="ms",
        baseline=base_40["p99_ms"], ours=check_40["p99_ms"], target=f"<= {TARGET_CAN_ACCESS_P99_MS:g} ms",
        met=check_40["p99_ms"] is not None and check_40["p99_ms"] <= TARGET_CAN_ACCESS_P99_MS,
        detail=(f"p50 {_ms(base_40['p50_ms'])} vs {_ms(check_40['p50_ms'])} ms; closed loop: every thread calls again "
                f"at once, so a call's time includes its wait for a CPU ({check_40['calls_per_s']:,.0f} calls/s)")))
    paced, base_paced = _cell(cells, "can_access", PACED, "ours"), _cell(cells, "can_access", PACED, "baseline")
    rows.append(Row(
        suite="load", metric="can_access p99 at 40 threads paced, connection per thread vs pooled", unit="ms",
        baseline=base_paced["p99_ms"], ours=paced["p99_ms"], target=f"<= {TARGET_CAN_ACCESS_P99_MS:g} ms",
        met=paced["p99_ms"] is not None and paced["p99_ms"] <= TARGET_CAN_ACCESS_P99_MS,
        detail=(f"calls start on a schedule, {paced['rate']:,.0f} calls/s in all (half the 8-thread throughput), "
                f"timed from the scheduled start; p50 {_ms(base_paced['p50_ms'])} vs {_ms(paced['p50_ms'])} ms")))
    return rows


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def prepare(conn, settings) -> dict:
    """Publish facet counts and report aggregates when no earlier suite did, and fill the Redis visibility tier."""
    from crmtasks.reports.refresh import refresh
    from crmtasks.search.precompute import precompute
    from crmtasks.sharing.warm import warm_visibility

    done = {}
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM search_index_current WHERE generation_id IS NOT NULL")
        published = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM report_aggregate_state WHERE as_of IS NOT NULL")
        aggregated = cur.fetchone()[0]
    if not published:
        done["facets"] = precompute(conn)["kind"]
    if not aggregated:
        done["aggregates"] = refresh(conn).mode
    done["visibilities_warmed"] = warm_visibility(settings).get("users_warmed")
    return done


def run(conn, url: str, settings, seconds: float, seed_value: int) -> tuple[list[Row], dict]:
    """Measure every cell; (rows, raw figures with every cell)."""
    prepared = prepare(conn, settings)
    cases = cases_from(conn, seed_value)
    cells = measure(url, cases, seconds)
    raw = {"cells": cells, "pool_size": settings.db_pool_size, "pool_timeout_s": settings.db_pool_timeout_s,
           "seconds_per_cell": seconds, "prepared": prepared}
    return rows_from(cells, settings.db_pool_size, seconds), raw
