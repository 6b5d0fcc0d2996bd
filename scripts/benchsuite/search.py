"""Search suite: a naive live search versus ``crmtasks.search.query.faceted_search``, per query shape.

Baseline ("live"): what a faceted search does without precomputation: one
``GROUP BY`` per facet field, a ``count(*)`` and the page query, over the
leads table. Ours: ``faceted_search`` (the published counts when they can
answer, otherwise one live ``GROUPING SETS`` statement), page included.

Shapes: no filter; one filter (an industry or an owner); two filters
(industry and status); text, a company name (few matches) and a surname
(more matches: a live count costs in proportion to the rows matched).
Values rotate so no single answer is cached, and the two sides are called
in turn with the same arguments (``timing.interleaved``).

Targets (issue 3): no filter and one filter p95 <= 2 ms and >= 95% below
live; two filters and text p95 <= 25 ms. The seed: 80% less query time and
p95 < 100 ms.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Mapping

from psycopg2 import sql

from benchsuite.rows import Row
from benchsuite.timing import interleaved, summary

# The facet fields of leads, as ``faceted_search`` names them -> their columns.
LEAD_FACET_COLUMNS = {"status": "status", "industry": "industry", "source": "source", "rating": "rating",
                      "owner": "owner_id"}
TEXT_COLUMNS = ("name", "company", "email")
PAGE_SIZE = 25

SEED_REDUCTION = 0.80  # the seed: 80% less query time
SEED_P95_MS = 100.0
FAST_P95_MS = 2.0  # issue 3: no filter and one filter
FAST_REDUCTION = 0.95
LIVE_P95_MS = 25.0  # issue 3: two filters and text


@dataclasses.dataclass(frozen=True)
class Shape:
    """A kind of search and the arguments it rotates through: (filters by facet name, text or None)."""

    name: str
    cases: tuple[tuple[dict, str | None], ...]
    fast: bool  # answerable from published counts: the 2 ms target

    @property
    def target(self) -> str:
        if self.fast:
            return f"p95 <= {FAST_P95_MS:g} ms and >= {FAST_REDUCTION:.0%} below live"
        return f"p95 <= {LIVE_P95_MS:g} ms"


def live_search(conn, filters: Mapping[str, object], q: str | None,
                columns: Mapping[str, str] = LEAD_FACET_COLUMNS) -> int:
    """The naive search over leads: one GROUP BY per facet field, a count and the page, all live.

    ``filters`` maps facet names (keys of ``columns``) to a value; ``q`` is
    matched case-insensitively anywhere in name, company or email. Returns the total.
    """
    conditions, params = [], []
    for field, value in filters.items():
        conditions.append(sql.SQL("{} = %s").format(sql.Identifier(columns[field])))
        params.append(value)
    if q:
        conditions.append(sql.SQL("({})").format(sql.SQL(" OR ").join(
            sql.SQL("{} ILIKE %s").format(sql.Identifier(column)) for column in TEXT_COLUMNS)))
        params += [f"%{q}%"] * len(TEXT_COLUMNS)
    where = sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("TRUE")
    with conn.cursor() as cur:
        for column in columns.values():
            cur.execute(sql.SQL("SELECT {column}, count(*) FROM leads WHERE {where} GROUP BY {column}").format(
                column=sql.Identifier(column), where=where), params)
            cur.fetchall()
        cur.execute(sql.SQL("SELECT count(*) FROM leads WHERE {}").format(where), params)
        total = cur.fetchone()[0]
        cur.execute(sql.SQL("SELECT * FROM leads WHERE {} ORDER BY id DESC LIMIT {}").format(
            where, sql.Literal(PAGE_SIZE)), params)
        cur.fetchall()
    return total


def shapes_from_data(conn) -> list[Shape]:
    """Query shapes whose values are read from the data (the most common ones, so every search has matches)."""
    with conn.cursor() as cur:
        cur.execute("SELECT industry FROM leads WHERE industry IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC, 1")
        industries = [row[0] for row in cur.fetchall()]
        cur.execute("SELECT status FROM leads GROUP BY 1 ORDER BY count(*) DESC, 1")
        statuses = [row[0] for row in cur.fetchall()]
        # Owners from the busiest to the quiet: "my records" for several kinds of user.
        cur.execute("SELECT owner_id FROM leads WHERE owner_id IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC, 1")
        owners = [row[0] for row in cur.fetchall()]
        # Company names' first word ("Silverridge"): about 0.06% of leads each.
        cur.execute("SELECT split_part(company, ' ', 1) FROM leads WHERE company IS NOT NULL "
                    "GROUP BY 1 HAVING length(split_part(company, ' ', 1)) >= 3 ORDER BY count(*) DESC, 1 LIMIT 6")
        companies = [row[0] for row in cur.fetchall()]
        # Surnames: about 1.2% of leads each (name and e-mail address both match).
        cur.execute("SELECT split_part(name, ' ', 2) FROM leads GROUP BY 1 "
                    "HAVING length(split_part(name, ' ', 2)) >= 3 ORDER BY count(*) DESC, 1 LIMIT 3")
        surnames = [row[0] for row in cur.fetchall()]
    if not (industries and statuses and owners and companies and surnames):
        raise RuntimeError("the search suite needs seeded leads (industries, statuses, owners, companies, names)")
    picked_owners = sorted({owners[int(share * (len(owners) - 1))] for share in (0, 0.1, 0.3, 0.5, 0.7, 0.9)},
                           key=owners.index)
    one_filter = [({"industry": industries[i % len(industries)]}, None) for i in range(8)]
    one_filter += [({"owner": owner}, None) for owner in picked_owners]
    two_filters = [({"industry": industries[i % len(industries)], "status": statuses[i % len(statuses)]}, None)
                   for i in range(10)]
    return [
        Shape("no filter", (({}, None),), fast=True),
        Shape("one filter", tuple(one_filter), fast=True),
        Shape("two filters", tuple(two_filters), fast=False),
        Shape("text, company name", tuple(({}, text) for text in companies), fast=False),
        Shape("text, surname", tuple(({}, text) for text in surnames), fast=False),
    ]


def measure(conn, repeat: int) -> list[dict]:
    """Time every shape both ways, interleaved; one dict per shape (live and ours summaries, source, matches).

    ``conn``: an autocommit psycopg2 connection to the bench database (the
    live side); ours goes through crmtasks' own pooled connection. The facet
    counts must have been published (precompute) before.
    """
    from crmtasks.search.query import faceted_search

    results = []
    for shape in shapes_from_data(conn):
        sources: set[str] = set()
        matched: list[int] = []

        def ours(case, sources=sources, matched=matched):
            result = faceted_search("leads", case[0], q=case[1], per_page=PAGE_SIZE)
            sources.add(result.source)
            matched.append(result.total)

        samples = interleaved({"live": lambda case: live_search(conn, case[0], case[1]), "ours": ours},
                              shape.cases, repeat)
        results.append({"shape": shape.name, "fast": shape.fast, "target": shape.target,
                        "live": summary(samples["live"]), "ours": summary(samples["ours"]),
                        "source": "/".join(sorted(sources)), "matched_avg": statistics.fmean(matched),
                        "values": len(shape.cases)})
    return results


def rows_from(results: list[dict], leads: int, repeat: int) -> list[Row]:
    """One row per shape (p95, our targets) and the verdict on the seed's search claim."""
    rows = []
    for result in results:
        live, ours = result["live"], result["ours"]
        if result["fast"]:
            met = ours["p95"] <= FAST_P95_MS and ours["p95"] <= (1 - FAST_REDUCTION) * live["p95"]
        else:
            met = ours["p95"] <= LIVE_P95_MS
        rows.append(Row(
            suite="search", metric=f"p95, {result['shape']}", unit="ms", baseline=live["p95"], ours=ours["p95"],
            target=result["target"], met=met, target_ratio=(1 - FAST_REDUCTION) if result["fast"] else None,
            detail=(f"p50 {live['p50']:.2f} vs {ours['p50']:.2f} ms; counts: {result['source']}; "
                    f"{result['matched_avg']:,.0f} leads matched on average; {result['values']} values rotated")))
    # The seed: 80% less query time (the median) and p95 under 100 ms, for every query shape.
    worst = max(results, key=lambda result: result["ours"]["p50"] / result["live"]["p50"])
    slowest_p95 = max(result["ours"]["p95"] for result in results)
    met = all(result["ours"]["p50"] <= (1 - SEED_REDUCTION) * result["live"]["p50"]
              and result["ours"]["p95"] < SEED_P95_MS for result in results)
    rows.append(Row(
        suite="search", claim="search",
        metric=f"median search time, least improved shape ({worst['shape']}), over {leads:,} leads",
        unit="ms", baseline=worst["live"]["p50"], ours=worst["ours"]["p50"],
        target=f">= {SEED_REDUCTION:.0%} less and p95 < {SEED_P95_MS:g} ms, every shape", met=met,
        target_ratio=1 - SEED_REDUCTION,
        detail=f"slowest p95 of ours over all shapes: {slowest_p95:.2f} ms; {repeat} calls per shape and side"))
    return rows


def run(conn, leads: int, repeat: int) -> tuple[list[Row], dict]:
    """Publish the facet counts, time every shape, and return (rows, raw results)."""
    from crmtasks.search.precompute import precompute

    precompute(conn)
    results = measure(conn, repeat)
    return rows_from(results, leads, repeat), {"shapes": results, "repeat": repeat}
