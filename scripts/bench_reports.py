#!/usr/bin/env python
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
- then reads of each report (median of --repeat, interleaved): the live
  GROUP BY over the raw tables; SELECT from a materialized view of that same
  query; the SQL our report function sends (the three executed and fetched
  the same way); and our whole report function (Python rows included).

It then checks that every report of ours equals the live query, and prints
ratios against the targets: reads >= 95% faster than live and no slower than
the view; the 1%-change run >= 5x faster than the concurrent refresh.
The data is loaded with the capture triggers off (as a restore would); the
first run is then a full rebuild. Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg2
from psycopg2 import sql

from crmtasks import aggregates, migrate, services
from crmtasks.reports import queries
from crmtasks.settings import SettingsError, get_settings

# The reports as the issue defines them: (our query, as crmtasks.reports sends it; the live SQL; the view's key).
OWNER = "d.owner_id, u.full_name AS owner_name, u.is_active AS owner_active"
REPORTS = {
    "pipeline per stage and owner": (
        lambda: queries.pipeline_query(by_owner=True),
        f"""SELECT d.stage, {OWNER}, count(*) AS deal_count, coalesce(sum(d.amount), 0) AS amount_total,
                   round(avg(d.amount), 2) AS average_amount,
                   round(coalesce(sum(d.amount * d.probability / 100.0), 0), 2) AS weighted_amount
            FROM deals d LEFT JOIN users u ON u.id = d.owner_id
            WHERE d.stage NOT IN ('Closed Won', 'Closed Lost')
            GROUP BY d.stage, d.owner_id, u.full_name, u.is_active""",
        ("owner_id", "stage")),
    "pipeline per stage": (
        lambda: queries.pipeline_query(),
        """SELECT d.stage, count(*) AS deal_count, coalesce(sum(d.amount), 0) AS amount_total,
                  round(avg(d.amount), 2) AS average_amount,
                  round(coalesce(sum(d.amount * d.probability / 100.0), 0), 2) AS weighted_amount
           FROM deals d WHERE d.stage NOT IN ('Closed Won', 'Closed Lost') GROUP BY d.stage""",
        ("stage",)),
    "revenue per month and owner": (
        lambda: queries.revenue_query(by_owner=True),
        f"""SELECT date_trunc('month', d.close_date)::date AS period_start, {OWNER}, count(*) AS deal_count,
                   coalesce(sum(d.amount), 0) AS revenue, round(avg(d.amount), 2) AS average_amount
            FROM deals d LEFT JOIN users u ON u.id = d.owner_id
            WHERE d.stage = 'Closed Won' AND d.close_date IS NOT NULL
            GROUP BY 1, d.owner_id, u.full_name, u.is_active""",
        ("period_start", "owner_id")),
    "win rate per quarter and owner": (
        lambda: queries.win_rate_query(by_owner=True),
        f"""SELECT date_trunc('quarter', d.close_date)::date AS period_start, {OWNER},
                   count(*) FILTER (WHERE d.stage = 'Closed Won') AS won,
                   count(*) FILTER (WHERE d.stage = 'Closed Lost') AS lost,
                   round((count(*) FILTER (WHERE d.stage = 'Closed Won'))::numeric / count(*), 4) AS win_rate
            FROM deals d LEFT JOIN users u ON u.id = d.owner_id
            WHERE d.stage IN ('Closed Won', 'Closed Lost') AND d.close_date IS NOT NULL
            GROUP BY 1, d.owner_id, u.full_name, u.is_active""",
        ("period_start", "owner_id")),
    "sales cycle per month": (
        lambda: queries.sales_cycle_query(),
        """SELECT date_trunc('month', d.close_date)::date AS period_start, count(*) AS deal_count,
                  sum(d.close_date - (d.created_at AT TIME ZONE 'UTC')::date) AS total_days,
                  round(avg(d.close_date - (d.created_at AT TIME ZONE 'UTC')::date), 1) AS average_days
           FROM deals d WHERE d.stage IN ('Closed Won', 'Closed Lost') AND d.close_date IS NOT NULL
           GROUP BY 1""",
        ("period_start",)),
    "leads per source and month": (
        lambda: queries.lead_conversion_query(),
        """SELECT date_trunc('month', l.created_at AT TIME ZONE 'UTC')::date AS period_start, l.source,
                  count(*) AS leads, count(*) FILTER (WHERE l.status = 'Converted') AS converted,
                  round((count(*) FILTER (WHERE l.status = 'Converted'))::numeric / count(*), 4) AS conversion_rate
           FROM leads l GROUP BY 1, 2""",
        ("period_start", "source")),
    "accounts per industry and region": (
        lambda: queries.accounts_query(),
        """SELECT a.industry, a.region, count(*) AS account_count FROM accounts a GROUP BY 1, 2""",
        ("industry", "region")),
}
DEAL_VIEWS = [name for name in REPORTS if not name.startswith(("leads", "accounts"))]

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

# 1% of deals change in one statement: a third close (won or lost, recently), a third change amount, a third change owner.
CHANGE_ONE_PERCENT = """
    UPDATE deals SET
        stage = CASE WHEN id %% 3 = 0 THEN (CASE WHEN random() < 0.5 THEN 'Closed Won' ELSE 'Closed Lost' END) ELSE stage END,
        close_date = CASE WHEN id %% 3 = 0 THEN current_date - (random() * 60)::int ELSE close_date END,
        amount = CASE WHEN id %% 3 = 1 THEN round(coalesce(amount, 1000) * (0.5 + random())::numeric, 2) ELSE amount END,
        owner_id = CASE WHEN id %% 3 = 2 THEN 1 + floor(%(users)s * random())::bigint ELSE owner_id END,
        updated_at = now()
    WHERE id %% 100 = %(slice)s"""


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

    for index, (title, (_, live_sql, key)) in enumerate(REPORTS.items()):
        view = sql.Identifier(f"bench_view_{index}")
        execute(conn, sql.SQL("CREATE MATERIALIZED VIEW {} AS ").format(view) + sql.SQL(live_sql))
        execute(conn, sql.SQL("CREATE UNIQUE INDEX ON {} ({}) NULLS NOT DISTINCT").format(
            view, sql.SQL(", ").join(map(sql.Identifier, key))))
    execute(conn, "VACUUM ANALYZE")

    started = time.perf_counter()
    full = aggregates.refresh(conn)
    results["full_run"] = {"ms": ms_since(started), "mode": full.mode, "rows_read": full.rows_read}

    refresh_all, refresh_deals, ours, update_with, update_without, folded = [], [], [], [], [], []
    for cycle in range(cycles):
        params = {"users": sizes["users"], "slice": cycle}
        # What the capture trigger costs the writer: the same UPDATE without it, rolled back.
        execute(conn, "BEGIN")
        execute(conn, "ALTER TABLE deals DISABLE TRIGGER report_deals_updated")
        update_without.append(timed(conn, CHANGE_ONE_PERCENT, params))
        execute(conn, "ROLLBACK")
        update_with.append(timed(conn, CHANGE_ONE_PERCENT, params))

        views_ms = {}
        for index, title in enumerate(REPORTS):
            views_ms[title] = timed(conn, sql.SQL("REFRESH MATERIALIZED VIEW CONCURRENTLY {}").format(
                sql.Identifier(f"bench_view_{index}")))
        refresh_all.append(sum(views_ms.values()))
        refresh_deals.append(sum(views_ms[title] for title in DEAL_VIEWS))

        started = time.perf_counter()
        stats = aggregates.refresh(conn)
        ours.append(ms_since(started))
        folded.append(stats.rows_read["deals"])
        assert stats.mode == "incremental", stats
    results["one_percent"] = {
        "deals_changed": sizes["deals"] // 100,
        "change_images_folded": statistics.median(folded),
        "refresh_concurrently_deal_views_ms": statistics.median(refresh_deals),
        "refresh_concurrently_all_views_ms": statistics.median(refresh_all),
        "incremental_run_ms": statistics.median(ours),
        "update_with_capture_ms": statistics.median(update_with),
        "update_without_capture_ms": statistics.median(update_without),
    }
    # Reads in the steady state: after the full run and the incremental runs.
    results["reads"] = measure_reads(conn, repeat)
    results["equal_to_live"] = check_equal(conn)
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


def measure_reads(conn, repeat: int) -> dict:
    """Median milliseconds per report, interleaved: the live query, the view, our report's SQL (each executed and
    fetched alike), and our whole report function (SQL plus Python rows and period labels)."""
    timings = {title: {"live": [], "view": [], "ours": [], "ours_api": []} for title in REPORTS}
    rows = {}
    for _ in range(repeat):
        for index, (title, (ours, live_sql, key)) in enumerate(REPORTS.items()):
            order = sql.SQL(", ").join(map(sql.Identifier, key))
            timings[title]["live"].append(timed_fetch(conn, sql.SQL(live_sql) + sql.SQL(" ORDER BY ") + order))
            timings[title]["view"].append(timed_fetch(conn, sql.SQL("SELECT * FROM {} ORDER BY {}").format(
                sql.Identifier(f"bench_view_{index}"), order)))
            query = ours()
            timings[title]["ours"].append(timed_fetch(conn, query.statement, query.params))
            started = time.perf_counter()
            report = queries.execute(ours(), conn)
            timings[title]["ours_api"].append(ms_since(started))
            rows[title] = len(report.rows)
    return {title: {"rows": rows[title],
                    **{method: statistics.median(values) for method, values in methods.items()},
                    **{f"{method}_min": min(values) for method, values in methods.items()}}
            for title, methods in timings.items()}


def check_equal(conn) -> bool:
    """Every report of ours, row for row, equals its live query now."""
    equal = True
    for title, (ours, live_sql, key) in REPORTS.items():
        order = sql.SQL(", ").join(map(sql.Identifier, key))
        with conn.cursor() as cur:
            cur.execute(sql.SQL(live_sql) + sql.SQL(" ORDER BY ") + order)
            live = [tuple(row) for row in cur.fetchall()]
        got = [tuple(value for column, value in row.items() if column != "period")
               for row in queries.execute(ours(), conn).rows]
        if got != live:
            print(f"MISMATCH: {title}: {len(got)} rows of ours vs {len(live)} live", file=sys.stderr)
            equal = False
    return equal


def print_results(results: dict) -> None:
    sizes = results["sizes"]
    print(f"\nreports benchmark: {sizes['deals']:,} deals, {sizes['leads']:,} leads, {sizes['accounts']:,} accounts, "
          f"{sizes['users']:,} users; {results['server']}; load {results['load_s']} s (capture off)")
    print(f"reads after the runs: median of {results['repeat']}, ms; live, view and ours = the SQL executed and "
          f"fetched alike; api = the whole crmtasks.reports call (Python rows and labels included); "
          f"(min) = ours/view on the fastest of each")
    header = (f"{'report':34} {'rows':>7} {'live':>9} {'view':>8} {'ours':>8} {'api':>8} {'faster than live':>17} "
              f"{'ours/view':>10} {'(min)':>6}")
    print(header)
    print("-" * len(header))
    reads_met = True
    for title, read in results["reads"].items():
        faster = 1 - read["ours"] / read["live"]
        versus_view = read["ours"] / read["view"]
        reads_met &= faster >= 0.95 and versus_view <= 1.0
        print(f"{title:34} {read['rows']:>7,} {read['live']:>9.2f} {read['view']:>8.2f} {read['ours']:>8.2f} "
              f"{read['ours_api']:>8.2f} {faster:>16.1%} {versus_view:>10.2f} {read['ours_min'] / read['view_min']:>6.2f}")
    change = results["one_percent"]
    ratio = change["refresh_concurrently_deal_views_ms"] / change["incremental_run_ms"]
    print(f"\nfull run (first run, rebuild from raw tables): {results['full_run']['ms']:.0f} ms")
    print(f"after 1% of deals changed ({change['deals_changed']:,} deals, {change['change_images_folded']:,.0f} "
          f"change images; median of {results['cycles']}):")
    print(f"  REFRESH MATERIALIZED VIEW CONCURRENTLY, the {len(DEAL_VIEWS)} deal views: "
          f"{change['refresh_concurrently_deal_views_ms']:.0f} ms (all {len(REPORTS)} views: "
          f"{change['refresh_concurrently_all_views_ms']:.0f} ms)")
    print(f"  our incremental run (all reports): {change['incremental_run_ms']:.0f} ms -> {ratio:.1f}x faster")
    print(f"  the UPDATE itself: {change['update_with_capture_ms']:.0f} ms with capture triggers, "
          f"{change['update_without_capture_ms']:.0f} ms without")
    print("\ntargets:")
    print(f"  reads >= 95% faster than live and no slower than the view: {'met' if reads_met else 'NOT met'}")
    print(f"  1%-change run >= 5x faster than the concurrent refresh: {ratio:.1f}x, "
          f"{'met' if ratio >= 5 else 'NOT met'}")
    print(f"  every report equals live SQL after the runs: {'yes' if results['equal_to_live'] else 'NO'}")


def server_version(conn) -> str:
    with conn.cursor() as cur:
        cur.execute("SHOW server_version")
        return f"PostgreSQL {cur.fetchone()[0]}"


def execute(conn, statement, params=None) -> None:
    with conn.cursor() as cur:
        cur.execute(statement, params)


def timed(conn, statement, params=None) -> float:
    started = time.perf_counter()
    execute(conn, statement, params)
    return ms_since(started)


def timed_fetch(conn, statement, params=None) -> float:
    started = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute(statement, params)
        cur.fetchall()
    return ms_since(started)


def ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


if __name__ == "__main__":
    raise SystemExit(main())
