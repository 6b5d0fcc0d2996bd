"""Many threads calling crmtasks' public API at once: the workload of the pool tests, in-process or in a child.

Usage: python -m tests.integration.pool_load_process THREADS ROUNDS
Runs ``hammer`` against DATABASE_URL with this process's settings
(CRMTASKS_DB_POOL_SIZE...) and prints one JSON line: calls made, errors
(their repr), and the most connections the pool opened.
"""

from __future__ import annotations

import json
import os
import sys
import threading

import psycopg2

from crmtasks import audit, reports, sharing
from crmtasks.pg import db
from crmtasks.search import faceted_search


def workload(url: str) -> list:
    """One round of calls through every public entry point, with values read from the seeded CRM."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT industry, status FROM leads WHERE industry IS NOT NULL LIMIT 1")
        industry, status = cur.fetchone()
        cur.execute("SELECT min(id) FROM users WHERE is_active")
        user_id = cur.fetchone()[0]
        cur.execute("SELECT min(id) FROM leads")
        lead_id = cur.fetchone()[0]
    conn.close()
    return [
        lambda: faceted_search("leads", {"industry": industry}),
        lambda: faceted_search("leads", {"industry": industry, "status": status}),
        lambda: reports.pipeline(),
        lambda: sharing.can_access(user_id, "leads", lead_id),
        lambda: audit.record("view", "lead", lead_id, actor_id=user_id),
        lambda: audit.history("lead", lead_id, limit=5),
    ]


def hammer(calls: list, threads: int, rounds: int) -> dict:
    """Every thread makes ``rounds`` rounds of ``calls``, all starting together; calls made and errors."""
    start = threading.Barrier(threads)
    errors: list[str] = []
    made = [0] * threads

    def caller(index: int) -> None:
        start.wait()
        for _ in range(rounds):
            for call in calls:
                try:
                    call()
                    made[index] += 1
                except Exception as error:  # noqa: BLE001 - every error is the finding
                    errors.append(f"{type(error).__module__}.{type(error).__name__}: {error}")

    workers = [threading.Thread(target=caller, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return {"calls": sum(made), "errors": errors}


def main() -> None:
    threads, rounds = int(sys.argv[1]), int(sys.argv[2])
    pool = db.bind()
    result = hammer(workload(os.environ["DATABASE_URL"]), threads, rounds)
    result.update(lent=pool.lent, opened=pool.lent + pool.idle)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
