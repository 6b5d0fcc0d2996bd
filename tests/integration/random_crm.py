"""Random CRM data and random edits for the report tests, from a seeded ``random.Random``.

The data has what breaks naive aggregates: NULL amounts and probabilities,
deals without a close date (open and closed), no owner, sales cycles that
cross month ends, timestamps a few minutes from a UTC month boundary, and
edits that reassign, deactivate, reclassify, re-date and delete.
"""

from __future__ import annotations

import datetime
import random

from psycopg2.extras import execute_values

OPEN_STAGES = ["Prospecting", "Qualification", "Proposal", "Negotiation"]
STAGES = OPEN_STAGES + ["Closed Won", "Closed Lost"]
LEAD_STATUSES = ["New", "Working", "Converted", "Disqualified"]
SOURCES = ["Web", "Referral", "Event", "Partner", None]
INDUSTRIES = ["Software", "Retail", "Health", None]
REGIONS = ["EMEA", "NA", "APAC", None]
START = datetime.datetime(2023, 1, 1, tzinfo=datetime.timezone.utc)


class RandomCRM:
    """Inserts and edits CRM rows through ``conn`` (autocommit), one statement per batch."""

    def __init__(self, conn, seed: int) -> None:
        self.conn = conn
        self.rng = random.Random(seed)

    # -- values -------------------------------------------------------------
    def _maybe(self, value, null_share):
        return None if self.rng.random() < null_share else value

    def _timestamp(self):
        if self.rng.random() < 0.2:  # near a UTC month boundary
            month = self.rng.randrange(24)
            first = datetime.datetime(2023 + month // 12, month % 12 + 1, 1, tzinfo=datetime.timezone.utc)
            return first + datetime.timedelta(minutes=self.rng.choice([-7, -1, 0, 1, 30]))
        return START + datetime.timedelta(seconds=self.rng.randrange(int(2 * 365.25 * 86400)))

    def _owner(self, owners):
        return self._maybe(self.rng.choice(owners), 0.1)

    def _amount(self):
        return self._maybe(round(self.rng.lognormvariate(9, 1.2), 2), 0.15)

    def _deal(self, owners, accounts):
        created = self._timestamp()
        stage = self.rng.choice(STAGES)
        close = created.date() + datetime.timedelta(days=self.rng.randrange(-3, 400))
        return (f"deal {self.rng.random():.6f}", self._maybe(self.rng.choice(accounts), 0.2) if accounts else None,
                self._owner(owners), stage, self._amount(), self._maybe(self.rng.randrange(0, 101), 0.1),
                self._maybe(close, 0.15), created, created)

    def _lead(self, owners):
        created = self._timestamp()
        return (f"lead {self.rng.random():.6f}", self.rng.choice(LEAD_STATUSES), self.rng.choice(SOURCES),
                self._owner(owners), created, created)

    def _account(self, owners):
        return (f"account {self.rng.random():.6f}", self.rng.choice(INDUSTRIES), self.rng.choice(REGIONS),
                self._owner(owners))

    # -- statements ---------------------------------------------------------
    def _ids(self, table):
        with self.conn.cursor() as cur:
            cur.execute(f"SELECT id FROM {table} ORDER BY id")  # table names are constants of this module
            return [row[0] for row in cur.fetchall()]

    def _sample(self, ids, share):
        return self.rng.sample(ids, max(1, int(len(ids) * share))) if ids else []

    def _execute(self, statement, params=None):
        with self.conn.cursor() as cur:
            cur.execute(statement, params)

    def create(self, *, users=8, accounts=60, deals=400, leads=300) -> None:
        with self.conn.cursor() as cur:
            execute_values(cur, "INSERT INTO users (username, full_name) VALUES %s",
                           [(f"user{i}-{self.rng.random():.8f}", f"Owner {i}") for i in range(users)])
        self.add(accounts=accounts, deals=deals, leads=leads)

    def add(self, *, accounts=0, deals=0, leads=0) -> None:
        owners = self._ids("users")
        with self.conn.cursor() as cur:
            if accounts:
                execute_values(cur, "INSERT INTO accounts (name, industry, region, owner_id) VALUES %s",
                               [self._account(owners) for _ in range(accounts)])
            account_ids = self._ids("accounts")
            if deals:
                execute_values(cur, """INSERT INTO deals (name, account_id, owner_id, stage, amount, probability,
                                       close_date, created_at, updated_at) VALUES %s""",
                               [self._deal(owners, account_ids) for _ in range(deals)])
            if leads:
                execute_values(cur, """INSERT INTO leads (name, status, source, owner_id, created_at, updated_at)
                                       VALUES %s""", [self._lead(owners) for _ in range(leads)])

    def edit(self) -> None:
        """A random mix of the edits a CRM sees, each as its own statement (some touching many rows)."""
        owners, deals, leads, accounts = (self._ids(t) for t in ("users", "deals", "leads", "accounts"))
        rng = self.rng
        # Reassign deals (the old owner's months and pipeline must shrink).
        for deal in self._sample(deals, 0.08):
            self._execute("UPDATE deals SET owner_id = %s, updated_at = now() WHERE id = %s", (rng.choice(owners), deal))
        # One statement that moves many deals to a single owner.
        self._execute("UPDATE deals SET owner_id = %s WHERE id = ANY(%s)", (rng.choice(owners), self._sample(deals, 0.05)))
        # Deactivate and rename owners: their history stays, under the current name.
        self._execute("UPDATE users SET is_active = false WHERE id = ANY(%s)", (rng.sample(owners, 2),))
        self._execute("UPDATE users SET full_name = full_name || ' (renamed)' WHERE id = %s", (rng.choice(owners),))
        # Stage moves: open -> won/lost, won -> lost, reopenings.
        for deal in self._sample(deals, 0.1):
            self._execute("UPDATE deals SET stage = %s WHERE id = %s", (rng.choice(STAGES), deal))
        # Amounts: to NULL, changed, from NULL; probabilities.
        self._execute("UPDATE deals SET amount = NULL WHERE id = ANY(%s)", (self._sample(deals, 0.04),))
        self._execute("UPDATE deals SET amount = coalesce(amount, 100) * 1.5 WHERE id = ANY(%s)", (self._sample(deals, 0.05),))
        self._execute("UPDATE deals SET probability = NULL WHERE id = ANY(%s)", (self._sample(deals, 0.03),))
        # Close dates: removed, moved across months and years.
        self._execute("UPDATE deals SET close_date = NULL WHERE id = ANY(%s)", (self._sample(deals, 0.04),))
        self._execute("UPDATE deals SET close_date = coalesce(close_date, date '2024-06-15') + %s WHERE id = ANY(%s)",
                      (rng.choice([-40, 31, 200]), self._sample(deals, 0.05)))
        # Edits no report reads: must log nothing.
        self._execute("UPDATE deals SET name = name || '.', updated_at = now() WHERE id = ANY(%s)", (self._sample(deals, 0.1),))
        # Deletions.
        self._execute("DELETE FROM deals WHERE id = ANY(%s)", (self._sample(deals, 0.05),))
        self._execute("DELETE FROM leads WHERE id = ANY(%s)", (self._sample(leads, 0.05),))
        # Leads: conversions, re-sourcing, reassignment.
        self._execute("UPDATE leads SET status = 'Converted' WHERE id = ANY(%s)", (self._sample(leads, 0.08),))
        self._execute("UPDATE leads SET status = 'Working' WHERE id = ANY(%s)", (self._sample(leads, 0.03),))
        self._execute("UPDATE leads SET source = %s, owner_id = %s WHERE id = ANY(%s)",
                      (rng.choice(SOURCES), rng.choice(owners), self._sample(leads, 0.05)))
        # Accounts: reclassified, reassigned, deleted (deals keep their rows: account_id SET NULL).
        self._execute("UPDATE accounts SET industry = %s, region = %s WHERE id = ANY(%s)",
                      (rng.choice(INDUSTRIES), rng.choice(REGIONS), self._sample(accounts, 0.1)))
        self._execute("UPDATE accounts SET owner_id = %s WHERE id = ANY(%s)", (rng.choice(owners), self._sample(accounts, 0.1)))
        self._execute("DELETE FROM accounts WHERE id = ANY(%s)", (self._sample(accounts, 0.05),))
        # New rows.
        self.add(accounts=5, deals=25, leads=20)
