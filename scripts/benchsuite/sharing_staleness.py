"""How stale ``notify`` mode can be: from a revoking commit to the first denied check in another process.

Setup: a watcher process (benchsuite.sharing_watch) in notify mode, and a
writer thread here that changes a lead's rating about ``WRITES_PER_S`` times
a second (each change is a notification every listener must apply), so the
revocation's notification queues behind real traffic.

Each *watch* round: the watcher checks an allowed (user, lead) pair from
memory in a loop; this process commits a revocation and notes
``time.monotonic()`` when COMMIT returns; the watcher notes the time of its
first denied answer. Staleness = denied - committed (0 when the denial came
first: it can, the commit is visible before the client hears back).
Revocations alternate between the two kinds of notification: the lead
reassigned (a record notification) and the user deactivated (an epoch bump).

Each *sync* round: the watcher remembers the pair, this process revokes,
the watcher calls ``sharing.sync()`` and checks: any allowed answer is a
stale answer after sync (and the same for the grant back).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg2

from benchsuite.timing import percentile

WRITES_PER_S = 200
SCRIPTS = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Pair:
    """A lead its owner may read, and the two ways to take that away."""

    user: int
    lead: int

    def revoke(self, kind: str) -> str:
        if kind == "record":
            return f"UPDATE leads SET owner_id = NULL WHERE id = {self.lead}"
        return f"UPDATE users SET is_active = false WHERE id = {self.user}"

    def restore(self, kind: str) -> str:
        if kind == "record":
            return f"UPDATE leads SET owner_id = {self.user} WHERE id = {self.lead}"
        return f"UPDATE users SET is_active = true WHERE id = {self.user}"


KINDS = ("record", "epoch")


def choose_pairs(conn, exact_checker, count: int, rng: random.Random) -> list[Pair]:
    """``count`` (owner, lead) pairs that both kinds of revocation really deny (checked exactly, then undone)."""
    with conn.cursor() as cur:
        cur.execute("SELECT l.id, l.owner_id FROM leads AS l JOIN users AS u ON u.id = l.owner_id "
                    "WHERE u.is_active ORDER BY l.id LIMIT 5000")
        candidates = cur.fetchall()
    rng.shuffle(candidates)
    pairs: list[Pair] = []
    used_users: set[int] = set()
    with conn.cursor() as cur:
        for lead, user in candidates:
            if len(pairs) == count:
                break
            if user in used_users:
                continue
            pair = Pair(user, lead)
            denied = True
            for kind in KINDS:
                cur.execute(pair.revoke(kind))
                denied = denied and not exact_checker.can_access(user, "leads", lead)
                cur.execute(pair.restore(kind))
            if denied and exact_checker.can_access(user, "leads", lead):
                pairs.append(pair)
                used_users.add(user)
    if not pairs:
        raise RuntimeError("no (owner, lead) pair whose access a revocation takes away")
    return pairs


class Writer(threading.Thread):
    """Changes one lead's rating ``rate`` times a second, each in its own transaction, until stopped."""

    def __init__(self, url: str, lead_ids: list[int], rate: int, seed_value: int) -> None:
        super().__init__(name="bench-sharing-writer", daemon=True)
        self.url, self.lead_ids, self.rate = url, lead_ids, rate
        self.rng = random.Random(seed_value)
        self.stopping = threading.Event()
        self.writes = 0
        self.elapsed_s = 0.0

    def run(self) -> None:
        conn = psycopg2.connect(self.url, application_name="crmtasks-bench-writer")
        conn.autocommit = True
        started = next_at = time.monotonic()
        try:
            with conn.cursor() as cur:
                while not self.stopping.is_set():
                    cur.execute("UPDATE leads SET rating = CASE WHEN rating = 'Hot' THEN 'Warm' ELSE 'Hot' END "
                                "WHERE id = %s", (self.rng.choice(self.lead_ids),))
                    self.writes += 1
                    next_at += 1 / self.rate
                    self.stopping.wait(max(0.0, next_at - time.monotonic()))
        finally:
            self.elapsed_s = time.monotonic() - started
            conn.close()


class Watcher:
    """The watcher process and its line protocol (benchsuite.sharing_watch)."""

    def __init__(self) -> None:
        env = {**os.environ, "CRMTASKS_SHARING_CONSISTENCY": "notify",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(SCRIPTS), str(SCRIPTS.parent),
                                                           os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen([sys.executable, "-m", "benchsuite.sharing_watch"], cwd=SCRIPTS, env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if not self.read().get("listening"):
            raise RuntimeError("the watcher process could not listen")

    def read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the watcher process exited with {self.process.poll()}")
        return json.loads(line)

    def send(self, **command) -> None:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def ask(self, **command) -> dict:
        self.send(**command)
        return self.read()

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _watch_round(conn, watcher: Watcher, pair: Pair, kind: str) -> float:
    """Milliseconds from the revoking commit to the watcher's first denied answer (inf: never denied)."""
    watcher.send(op="watch", user=pair.user, record=pair.lead)
    ready = watcher.read()
    if not ready["ready"]:
        raise RuntimeError(f"watcher denied {pair} before the revocation")
    with conn.cursor() as cur:
        cur.execute(pair.revoke(kind))
        committed = time.monotonic()
    denied = watcher.read()
    with conn.cursor() as cur:
        cur.execute(pair.restore(kind))
    if denied["denied_at"] is None:
        return float("inf")
    return max(0.0, (denied["denied_at"] - committed) * 1000)


def _sync_round(conn, watcher: Watcher, pair: Pair, kind: str) -> tuple[int, int]:
    """(stale answers after sync, fences that fell back to exact because the listener was not listening)."""
    stale = fallbacks = 0
    if not watcher.ask(op="prime", user=pair.user, record=pair.lead)["allowed"]:
        raise RuntimeError(f"watcher denied {pair} before the revocation")
    for statement, expected in ((pair.revoke(kind), False), (pair.restore(kind), True)):
        with conn.cursor() as cur:
            cur.execute(statement)
        answer = watcher.ask(op="sync_check", user=pair.user, record=pair.lead)
        stale += answer["allowed"] != expected
        fallbacks += not answer["synced"]
    return stale, fallbacks


def measure(url: str, exact_checker, rounds: int, seed_value: int) -> dict:
    """Run ``rounds`` watch rounds and ``rounds`` sync rounds under the writer; the figures."""
    rng = random.Random(seed_value)
    conn = psycopg2.connect(url, application_name="crmtasks-bench-revoker")
    conn.autocommit = True
    pairs = choose_pairs(conn, exact_checker, min(rounds, 50), rng)
    watched = {pair.lead for pair in pairs}
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM leads ORDER BY id LIMIT 20000")
        busy_leads = [row[0] for row in cur.fetchall() if row[0] not in watched]
    writer = Writer(url, busy_leads, WRITES_PER_S, seed_value)
    watcher = Watcher()
    staleness, stale, fallbacks = [], 0, 0
    writer.start()
    try:
        for i in range(rounds):
            staleness.append(_watch_round(conn, watcher, pairs[i % len(pairs)], KINDS[i % 2]))
            found, fell_back = _sync_round(conn, watcher, pairs[(i + 1) % len(pairs)], KINDS[i % 2])
            stale, fallbacks = stale + found, fallbacks + fell_back
        counts = watcher.ask(op="counts")
    finally:
        writer.stopping.set()
        writer.join(30)
        watcher.close()
        conn.close()
    finite = [value for value in staleness if value != float("inf")]
    return {"rounds": rounds, "pairs": len(pairs), "staleness_ms": staleness,
            "p50_ms": percentile(finite, 0.5) if finite else None, "p99_ms": percentile(staleness, 0.99),
            "max_ms": max(staleness), "never_denied": len(staleness) - len(finite),
            "stale_after_sync": stale, "sync_checks": 2 * rounds, "sync_fallbacks": fallbacks,
            "writes": writer.writes, "writes_per_s": writer.writes / writer.elapsed_s if writer.elapsed_s else 0.0,
            "watcher_counts": counts}
