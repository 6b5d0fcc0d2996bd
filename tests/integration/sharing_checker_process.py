"""A separate process that checks access, for the cross-process revocation tests.

Usage: python -m tests.integration.sharing_checker_process
Reads one JSON command per line on stdin and answers one JSON line:
  {"op": "warm"}                                  -> the warm_caches job's stats
  {"op": "counts"}                                -> the counts below
  {"op": "check", "user": 3, "entity": "leads", "record": 1, "level": "read"}
                                                  -> {"allowed": bool, "counts": {...}}
Counts are this process's cache lookups (local_hits, redis_hits, misses)
and compiles, so a test can tell a warm answer from a rebuilt one.
"""

from __future__ import annotations

import json
import sys

from crmtasks import sharing
from crmtasks.jobs import warm_caches
from crmtasks.pg import db


def _counts() -> dict[str, int]:
    checker = sharing.checker()
    counts = {"local_hits": 0, "redis_hits": 0, "misses": 0, "compiles": 0}
    counts.update(checker.cache.counts)
    counts.update(checker.counts)
    return counts


def main() -> None:
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "warm":
            with db.connection():
                answer = warm_caches.run()
        elif command["op"] == "counts":
            answer = _counts()
        else:
            allowed = sharing.can_access(command["user"], command["entity"], command["record"], command["level"])
            answer = {"allowed": allowed, "counts": _counts()}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
