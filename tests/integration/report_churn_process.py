"""A separate process that keeps runs and report calls going until it is killed (kill -9 tests).

Usage: python -m tests.integration.report_churn_process DATABASE_URL
Loops: change a few deals, run ``precompute_aggregates``' refresh, call
every report shape (keeping payloads and CLI bytes), and prints one line
per loop so the test knows it is under way.
"""

from __future__ import annotations

import sys

import psycopg2

from crmtasks import reports
from crmtasks.reports import queries, refresh, render


def main(url: str) -> None:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    loop = 0
    while True:
        with conn.cursor() as cur:
            cur.execute("UPDATE deals SET amount = coalesce(amount, 0) + 1, owner_id = (SELECT min(id) FROM users) "
                        "WHERE id %% 7 = %s", (loop % 7,))
        refresh.refresh(conn)
        for name, spec in reports.REPORTS.items():
            for by_owner in (False, True):
                spec.function(connection=conn, by_owner=by_owner)
                for output_format in render.FORMATS:
                    render.query_bytes(queries.query_for(name, conn, by_owner=by_owner), output_format, conn)
        loop += 1
        print(loop, flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
