#!/usr/bin/env python3
"""Reports three ways, side by side in one run: live SQL, a materialized view, our aggregates.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        python scripts/bench_reports.py --deals 100000 [--leads N] [--accounts N] [--users N] [--repeat 5]

Creates a database of its own on the server named by DATABASE_URL (dropped at
the end unless --keep), fills it with INSERT ... SELECT generate_series (skewed
owners and amounts, NULL amounts, probabilities and close dates, dates over
24 months), then measures:

- a full run of ``precompute_aggregates`` (the first run: a rebuild);
- after 1% of deals changed (stage, amount or owner; one UPDATE), --cycles
  times: REFRESH MATERIALIZED VIEW CONCURRENTLY of the views that read deals
  vs. our incremental run, and what the capture triggers added to the UPDATE;
- then whole calls of each report shape (median of --repeat, interleaved):
  the best live GROUP BY over the raw tables, a materialized view of it, and
  ours, fetched the same way: rows in Python (API) and the CLI's csv/json
  bytes (see benchsuite/reports.py).

It then checks that every report of ours equals the live query, and prints
ratios against the targets of issue 14: whole calls >= 90% faster than live
and no slower than the view; the 1%-change run >= 10x faster than the
concurrent refresh.
The data is loaded with the capture triggers off (as a restore would); the
first run is then a full rebuild. Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from _venv import use_project_venv  # scripts/_venv.py: this script's directory is first on sys.path

use_project_venv()  # a fresh clone's python3 lacks psycopg2: re-run under the project's virtualenv

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

import psycopg2
from benchsuite.reports import (
    DEAL_VIEWS,
    FASTER_THAN_LIVE,
    INCREMENTAL_SPEEDUP,
    REPORTS,
    SHAPES,
    change_cycles,
    check_equal,
    create_views,
    execute,
    measure_reads,
)
from benchsuite.timing import ms_since
from psycopg2 import sql

from crmtasks.pg import migrate
from crmtasks.reports import refresh as aggregates
from crmtasks.services import urls as services
from crmtasks.settings import SettingsError, get_settings

LOAD = [
    ("users", """
        INSERT INTO users (username, full_name, is_active)
        SELECT 'user' || g, 'Owner ' || g, mod(g, 10) <> 0 FROM generate_series(1, %(users)s) g"""),
    ("accounts", """
        INSERT INTO accounts (name, industry, region, owner_id, created_at, updated_at)
        SELECT 'Account ' || g,
               CASE WHEN random() < 0.05 THEN NULL ELSE (ARRAY['Software','Retail','Health','Finance','Energy',
                    'Media','Logistics','Education','Government','Manufacturing','Travel','Telecom'])[1 + floor(random() * 12)::int] END,
               CASE WHEN random() < 0.03 THEN NULL ELSE (ARRAY['EMEA','NA','LATAM','APAC','ANZ','MEA'])[1 + floor(random() * 6)::int] END,
               1 + floor(%(users)s * random() ^ 2)::bigint, now(), now()
        FROM generate_series(1, %(accounts)s) g"""),
    ("deals", """
        INSERT INTO deals (name, account_id, owner_id, stage, amount, probability, close_date, created_at, updated_at)
        SELECT 'Deal ' || g, 1 + floor(%(accounts)s * random())::bigint, owner, stage,
               CASE WHEN random() < 0.05 THEN NULL ELSE round(exp(6 + 5 * random())::numeric, 2) END,
               CASE WHEN random() < 0.03 THEN NULL
                    ELSE CASE stage WHEN 'Closed Won' THEN 100 WHEN 'Closed Lost' THEN 0 WHEN 'Prospecting' THEN 10
                         WHEN 'Qualification' THEN 20 WHEN 'Needs Analysis' THEN 40 WHEN 'Proposal' THEN 60 ELSE 80 END END,
               CASE WHEN random() < 0.03 THEN NULL
                    WHEN stage IN ('Closed Won', 'Closed Lost') THEN least(created::date + (5 + random() * 200)::int, current_date)
                    WHEN random() < 0.2 THEN NULL
                    ELSE current_date + (random() * 180)::int END,
               created, created
        FROM (SELECT g, 1 + floor(%(users)s * random() ^ 2)::bigint AS owner,
                     (ARRAY['Closed Won','Closed Won','Closed Won','Closed Lost','Closed Lost','Closed Lost',
                            'Prospecting','Qualification','Needs Analysis','Proposal','Negotiation'])[1 + floor(random() * 11)::int] AS stage,
                     now() - random() * interval '730 days' AS created
              FROM generate_series(1, %(deals)s) g) AS generated"""),
    ("leads", """
        INSERT INTO leads (name, company, status, industry, source, owner_id, created_at, updated_at)
        SELECT 'Lead ' || g, 'Company ' || mod(g, 5000),
               (ARRAY['New','New','New','Working','Working','Converted','Converted','Disqualified','Disqualified','Nurturing'])[1 + floor(random() * 10)::int],
               NULL,
               CASE WHEN random() < 0.05 THEN NULL ELSE (ARRAY['Web','Referral','Event','Partner','Cold Call','Ads',
                    'Social','Email'])[1 + floor(random() * 8)::int] END,
               1 + floor(%(users)s * random() ^ 2)::bigint, created, created
        FROM (SELECT g, now() - random() * interval '730 days' AS created FROM generate_series(1, %(leads)s) g) AS generated"""),
]

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=100_000)
    parser.add_argument("--leads", type=int, help="default: as many as deals")
    parser.add_argument("--accounts", type=int, help="default: deals / 5")
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=5, help="reads per report and method (median reported)")
    parser.add_argument("--cycles", type=int, default=3, help="1%% change + refresh cycles (median reported)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    sizes = {"deals": args.deals, "leads": args.leads or args.deals, "accounts": args.accounts or max(1, args.deals // 5),
             "users": args.users}
    if min(sizes.values()) < 1 or args.repeat < 1 or args.cycles < 1:
        parser.error("sizes, --repeat and --cycles must be at least 1")

    try:
        server_url = services.database_url(get_settings())
    except SettingsError as error:
        print(f"bench_reports: {error}", file=sys.stderr)
        return 2
    name = f"crmtasks_bench_reports_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = urlsplit(server_url)._replace(path=f"/{name}").geturl()
    try:
        results = run(url, sizes, args.repeat, args.cycles)
    finally:
        if args.keep:
            print(f"kept database {name}", file=sys.stderr)
        else:
            with admin.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()
    print_results(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0 if results["equal_to_live"] else 1


def run(url: str, sizes: dict, repeat: int, cycles: int) -> dict:
    conn = migrate.connect(url)
    migrate.migrate(conn)
    conn.autocommit = True
    results = {"sizes": sizes, "repeat": repeat, "cycles": cycles, "server": server_version(conn)}
    results["load_s"] = load(conn, sizes)
    create_views(conn)

    started = time.perf_counter()
    full = aggregates.refresh(conn)
    results["full_run"] = {"ms": ms_since(started), "mode": full.mode, "rows_read": full.rows_read}
    results["one_percent"] = change_cycles(conn, sizes["users"], sizes["deals"], cycles)
    # Reads in the steady state: after the full run and the incremental runs.
    results["reads"] = measure_reads(conn, repeat)
    results["equal_to_live"] = not check_equal(conn)
    conn.close()
    return results


def load(conn, sizes: dict) -> float:
    """Generate the CRM with the capture triggers off; returns seconds."""
    started = time.perf_counter()
    for table in ("deals", "leads", "accounts"):
        execute(conn, sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(sql.Identifier(table)))
    for table, statement in LOAD:
        print(f"loading {table}...", file=sys.stderr)
        with conn.cursor() as cur:
            cur.execute(statement, sizes)
    for table in ("deals", "leads", "accounts"):
        execute(conn, sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(sql.Identifier(table)))
    return round(time.perf_counter() - started, 1)


def print_results(results: dict) -> None:
    sizes = results["sizes"]
    print(f"\nreports benchmark: {sizes['deals']:,} deals, {sizes['leads']:,} leads, {sizes['accounts']:,} accounts, "
          f"{sizes['users']:,} users; {results['server']}; load {results['load_s']} s (capture off)")
    print(f"whole calls after the runs: median of {results['repeat']}, ms; live = the best live GROUP BY, view = a "
          f"materialized view of it, ours = crmtasks.reports (api: rows in Python) or the CLI's bytes (csv, json), "
          f"each fetched the same way; cold = ours, first call of a refresh generation")
    header = (f"{'shape':5} {'report':42} {'rows':>7} {'live':>9} {'view':>8} {'ours':>8} {'cold':>8} "
              f"{'faster than live':>17} {'ours/view':>10}")
    print(header)
    print("-" * len(header))
    reads_met = True
    for shape in SHAPES:
        for title, read in results["reads"].items():
            live, view, ours = read[f"{shape}_live"], read[f"{shape}_view"], read[f"{shape}_ours"]
            faster, versus_view = 1 - ours / live, ours / view
            reads_met &= faster >= FASTER_THAN_LIVE and versus_view <= 1.0
            print(f"{shape:5} {title:42} {read['rows']:>7,} {live:>9.2f} {view:>8.2f} {ours:>8.2f} "
                  f"{read[f'{shape}_cold']:>8.2f} {faster:>16.1%} {versus_view:>10.2f}")
    change = results["one_percent"]
    ratio = change["refresh_concurrently_deal_views_ms"] / change["incremental_run_ms"]
    print(f"\nfull run (first run, rebuild from raw tables): {results['full_run']['ms']:.0f} ms")
    print(f"after 1% of deals changed ({change['deals_changed']:,} deals, {change['change_images_folded']:,.0f} "
          f"change images; median of {results['cycles']}):")
    print(f"  REFRESH MATERIALIZED VIEW CONCURRENTLY, the {len(DEAL_VIEWS)} deal views: "
          f"{change['refresh_concurrently_deal_views_ms']:.0f} ms (all {len(REPORTS)} views: "
          f"{change['refresh_concurrently_all_views_ms']:.0f} ms; the 2 storage-equivalent views: "
          f"{change['refresh_concurrently_storage_views_ms']:.0f} ms)")
    print(f"  our incremental run (all reports): {change['incremental_run_ms']:.0f} ms -> {ratio:.1f}x faster "
          f"(then, outside the run, the job deletes old payloads and vacuums the emptied log: "
          f"{change['job_tidy_up_ms']:.1f} ms)")
    print(f"  the UPDATE itself: {change['update_with_capture_ms']:.0f} ms with capture triggers, "
          f"{change['update_without_capture_ms']:.0f} ms without")
    print("\ntargets:")
    print(f"  whole calls >= {FASTER_THAN_LIVE:.0%} faster than live and no slower than the view: "
          f"{'met' if reads_met else 'NOT met'}")
    print(f"  1%-change run >= {INCREMENTAL_SPEEDUP:g}x faster than the concurrent refresh: {ratio:.1f}x, "
          f"{'met' if ratio >= INCREMENTAL_SPEEDUP else 'NOT met'}")
    print(f"  every report equals live SQL after the runs: {'yes' if results['equal_to_live'] else 'NO'}")


def server_version(conn) -> str:
    with conn.cursor() as cur:
        cur.execute("SHOW server_version")
        return f"PostgreSQL {cur.fetchone()[0]}"


if __name__ == "__main__":
    raise SystemExit(main())
