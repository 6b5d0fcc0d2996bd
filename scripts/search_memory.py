#!/usr/bin/env python3
"""Where a searching process's memory goes: resident size step by step, and bytes per part of each loaded index.

    scripts/search_memory.py postgresql://postgres@127.0.0.1:5432/crmtasks_bench_<run id> [--text]

Needs a database whose search index is published (``scripts/bench --scale medium --keep`` leaves one,
or run ``crmtasks run --task precompute_facets`` on a seeded one). This process is the fresh searching
process: it imports search, runs the searches of the bench's memory row (every entity unfiltered, then
by its two first facets' commonest values), and prints its resident memory after each entity, then
each base's bytes by part (ids, facet codes, facet bitmaps, numbers, texts). With ``--text`` it then
runs one text search per entity and prints what the trigram indexes add. Read-only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from _venv import use_project_venv  # scripts/_venv.py: this script's directory is first on sys.path

TEXT_QUERIES = {"leads": "smith", "deals": "renewal", "accounts": "tech", "contacts": "john"}


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="PostgreSQL URL of a database with a published search index")
    parser.add_argument("--text", action="store_true", help="also run one text search per entity")
    args = parser.parse_args(argv)
    os.environ["DATABASE_URL"] = args.url
    start = _status_mib("VmRSS")
    import peewee
    import psycopg2

    from benchsuite.search_index import memory_row_searches
    from crmtasks.pg import db
    from crmtasks.search import faceted_search
    from crmtasks.search.facets import ENTITIES
    from crmtasks.search.index_cache import CACHE
    from crmtasks.search.text_filter import STATE
    from crmtasks.settings import get_settings

    try:
        db.bind(get_settings())
        imported = previous = _status_mib("VmRSS")
        print(f"resident at start {start:.1f} MiB, after importing search {imported:.1f} MiB")
        for name, entity in ENTITIES.items():
            result = memory_row_searches(name, entity)
            if result.source != "precomputed":
                print(f"{name}: no published search index in this database (source {result.source})", file=sys.stderr)
                return 2
            now = _status_mib("VmRSS")
            print(f"after searching {name}: {now:.1f} MiB (+{now - previous:.1f})")
            previous = now
        total = 0
        for name, loaded in CACHE._loaded.items():
            parts = loaded.base.nbytes_by_part()
            total += sum(parts.values())
            shown = ", ".join(f"{part} {size / 2**20:.2f}" for part, size in parts.items())
            print(f"  {name} base, {len(loaded.base):,} rows: {sum(parts.values()) / 2**20:.1f} MiB ({shown})")
        print(f"index arrays {total / 2**20:.1f} MiB; resident {previous:.1f} MiB "
              f"(+{previous - imported:.1f} over the import); peak {_status_mib('VmHWM'):.1f} MiB")
        if args.text:
            for name, q in TEXT_QUERIES.items():
                started = time.perf_counter()
                result = faceted_search(name, q=q)
                took = (time.perf_counter() - started) * 1000
                now = _status_mib("VmRSS")
                print(f"text {name} q={q!r}: {result.total:,} rows, first search {took:.0f} ms (builds the "
                      f"trigram index); {now:.1f} MiB (+{now - previous:.1f})")
                previous = now
            print(f"trigram indexes {STATE.nbytes() / 2**20:.1f} MiB; resident {previous:.1f} MiB; "
                  f"peak {_status_mib('VmHWM'):.1f} MiB")
    except (psycopg2.Error, peewee.PeeweeException) as error:
        print(f"cannot search {args.url.rsplit('@', 1)[-1]}: {str(error).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    use_project_venv()
    sys.exit(main())
