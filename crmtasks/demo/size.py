"""How much demo data: the CRM tables, rows per table, and the span of history.

Why a module of its own: the limits are checked before anything reaches the
database, and every other demo module reads the same few constants.
"""

from __future__ import annotations

import dataclasses

# Ordered by foreign-key dependency: each table only references earlier ones.
CRM_TABLES = ("roles", "users", "accounts", "contacts", "leads", "deals")
# Creation times lie within this many days before the anchor (24 months).
HISTORY_DAYS = 730
# More rows than this per table is a typo, not a demo.
MAX_ROWS = 50_000_000

# users >= 10 so the role tree has someone in every layer down to a team.
_LEAST_ROWS = {"users": 10, "accounts": 1, "contacts": 0, "leads": 0, "deals": 0}


@dataclasses.dataclass(frozen=True)
class DemoSize:
    """How many rows of each kind to generate.

    The defaults are the first-run demo (:meth:`first_run`, a few seconds to
    generate); :meth:`large` is the size the generator is tuned for (under a
    minute). Invalid counts raise ValueError with a one-line message, before
    any statement is sent.

    Parameters:
      users(int): Users, from 10 (so every layer of the role tree down to a
        team has someone) to :data:`MAX_ROWS`. The roles follow from it.
      accounts(int): Accounts, from 1 to :data:`MAX_ROWS`.
      contacts(int): Contacts, from 0 to :data:`MAX_ROWS`.
      leads(int): Leads, from 0 to :data:`MAX_ROWS`.
      deals(int): Deals, from 0 to :data:`MAX_ROWS`.
    """

    users: int = 200
    accounts: int = 20_000
    contacts: int = 50_000
    leads: int = 100_000
    deals: int = 30_000

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            least = _LEAST_ROWS[field.name]
            if isinstance(value, bool) or not isinstance(value, int):
                # ValueError, not TypeError: callers report every bad size alike.
                raise ValueError(f"{field.name} must be a whole number (got {value!r})")  # noqa: TRY004
            if not least <= value <= MAX_ROWS:
                raise ValueError(f"{field.name} must be between {least:,} and {MAX_ROWS:,} (got {value:,})")

    @classmethod
    def first_run(cls) -> DemoSize:
        """The demo a new installation gets: about 200k rows, generated in a few seconds."""
        return cls()

    @classmethod
    def large(cls) -> DemoSize:
        """A big CRM (2M rows) for trying the jobs at scale; generated in well under a minute."""
        return cls(users=1_000, accounts=200_000, contacts=500_000, leads=1_000_000, deals=300_000)
