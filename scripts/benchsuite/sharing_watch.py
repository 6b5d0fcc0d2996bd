"""The other process of the staleness measurement: it checks one access over and over until the answer flips.

Started by benchsuite.sharing_staleness as ``python -m benchsuite.sharing_watch``
with the run's environment and CRMTASKS_SHARING_CONSISTENCY=notify, so its
checks come from memory kept current by its own listener. It prints
``{"listening": true}`` once that listener listens, then reads one JSON
command per line on stdin and answers one JSON line on stdout:

  {"op": "watch", "user": U, "record": R}
      -> {"ready": allowed, "from_memory": bool} after two checks (the second
         must come from memory), then keeps checking every POLL_S seconds and
         -> {"denied_at": time.monotonic() of the first denied answer, "checks": n}
         (denied_at is null when nothing changed within WATCH_LIMIT_S)
  {"op": "prime", "user": U, "record": R}   -> {"allowed": bool} after two checks
  {"op": "sync_check", "user": U, "record": R} -> {"synced": bool, "allowed": bool}: sync(), then one check
  {"op": "counts"}                           -> the checker's and the listener's counts

time.monotonic() is CLOCK_MONOTONIC on Linux: one clock for every process
on the machine, so the parent can subtract its commit time from denied_at.
"""

from __future__ import annotations

import json
import sys
import time

from crmtasks import sharing

ENTITY = "leads"
# Between two checks of a watch: a busy request loop that still lets the listener thread run.
POLL_S = 0.0002
WATCH_LIMIT_S = 30.0


def _say(answer: dict) -> None:
    print(json.dumps(answer), flush=True)


def _twice(checker, user: int, record: int) -> tuple[bool, bool]:
    """(allowed, the second answer came from memory)."""
    checker.can_access(user, ENTITY, record)
    before = checker.counts["memory_answers"]
    allowed = checker.can_access(user, ENTITY, record)
    return allowed, checker.counts["memory_answers"] > before


def _watch(checker, user: int, record: int) -> None:
    allowed, from_memory = _twice(checker, user, record)
    _say({"ready": allowed, "from_memory": from_memory})
    checks, deadline = 0, time.monotonic() + WATCH_LIMIT_S
    while time.monotonic() < deadline:
        checks += 1
        if not checker.can_access(user, ENTITY, record):
            _say({"denied_at": time.monotonic(), "checks": checks})
            return
        time.sleep(POLL_S)
    _say({"denied_at": None, "checks": checks})


def main() -> int:
    checker = sharing.checker()
    if checker.listener is None or not checker.listener.wait_listening(30):
        _say({"listening": False})
        return 1
    _say({"listening": True})
    for line in sys.stdin:
        command = json.loads(line)
        op = command["op"]
        if op == "watch":
            _watch(checker, command["user"], command["record"])
        elif op == "prime":
            _say({"allowed": _twice(checker, command["user"], command["record"])[0]})
        elif op == "sync_check":
            synced = sharing.sync()
            _say({"synced": synced, "allowed": checker.can_access(command["user"], ENTITY, command["record"])})
        else:
            _say({**checker.counts, **{f"listener_{name}": value for name, value in checker.listener.counts.items()}})
    checker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
