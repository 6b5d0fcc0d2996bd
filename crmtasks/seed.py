"""Realistic demo data for an empty CRM, generated inside PostgreSQL.

Why: the maintenance jobs only show what they do on a CRM of realistic size
and shape: skewed owners and vocabularies, NULLs where people leave fields
blank, two years of history. ``crmtasks seed`` fills one in seconds.

How: one ``INSERT ... SELECT ... FROM generate_series`` per table; Python only
sends the statements. Every value is a pure function of (seed, table column,
row number): pseudo-random numbers come from ``hashint8extended`` (never
``random()``, whose sequence depends on the plan and on parallel workers), so
the result does not depend on the query plan either.

Guarantees:

* Deterministic: the same seed, :class:`DemoSize` and ``today`` give the same
  rows, ids included, in any database (checked: PostgreSQL 15 and 18 on
  x86-64 give byte-identical tables; ``hashint8extended`` is stable across
  versions because hash partitioning depends on it).
  Times are relative to ``today`` at 00:00 UTC (default: the current UTC
  date), so two runs on the same day are identical.
* Atomic: the whole seed is one transaction; an error or a kill -9 halfway
  leaves the CRM as it was, and seeding again works.
* Only an empty CRM is seeded (:class:`CrmNotEmpty` otherwise) unless
  ``replace=True``, which empties the CRM tables first (never ``task_runs``).
* The schema is left as it was. For speed the load drops the CRM tables'
  foreign keys and non-unique indexes and recreates them from their catalog
  definitions (building an index once is far cheaper than updating it per
  row, and one validation join is far cheaper than a trigger per row); this
  happens inside the same transaction, so no one ever sees the schema
  without them. The helper SQL functions live in ``pg_temp`` and are dropped
  before commit.
* Data shape: ids grow with ``created_at`` like a serial column would;
  ``created_at <= updated_at <= today 00:00 UTC``, all within the
  :data:`HISTORY_DAYS` before it, with volume growing over time.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Callable, Iterable

from psycopg2 import sql
from psycopg2.extensions import connection as PgConnection
from psycopg2.extensions import cursor as PgCursor

# Ordered by foreign-key dependency: each table only references earlier ones.
CRM_TABLES = ("roles", "users", "accounts", "contacts", "leads", "deals")
# Creation times lie within this many days before the anchor (24 months).
HISTORY_DAYS = 730
# More rows than this per table is a typo, not a demo.
MAX_ROWS = 50_000_000

# users >= 10 so the role tree has someone in every layer down to a team.
_LEAST_ROWS = {"users": 10, "accounts": 1, "contacts": 0, "leads": 0, "deals": 0}

Progress = Callable[[str, int, int], None]
STEPS = (*CRM_TABLES, "indexes", "analyze")


class CrmNotEmpty(ValueError):
    """Seeding was refused because the CRM tables already hold rows."""


@dataclasses.dataclass(frozen=True)
class DemoSize:
    """How many rows of each kind to generate.

    The defaults are the first-run demo (:meth:`first_run`, a few seconds to
    seed); :meth:`large` is the size the seeder is tuned for (under a minute).
    Invalid counts raise ValueError with a one-line message.
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
        """The demo a new installation gets: about 200k rows, seeded in a few seconds."""
        return cls()

    @classmethod
    def large(cls) -> DemoSize:
        """A big CRM (2M rows) for trying the jobs at scale; seeds in well under a minute."""
        return cls(users=1_000, accounts=200_000, contacts=500_000, leads=1_000_000, deals=300_000)


# --------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------


def crm_is_empty(conn: PgConnection) -> bool:
    """True when no CRM table (roles, users, accounts, contacts, leads, deals) holds a row.

    Runs one read-only query in the connection's current transaction.
    """
    with conn.cursor() as cur:
        return not _tables_with_rows(cur)


def seed_demo(
    conn: PgConnection,
    size: DemoSize,
    seed: int = 42,
    *,
    replace: bool = False,
    progress: Progress | None = None,
    today: datetime.date | None = None,
) -> dict[str, int]:
    """Fill the empty CRM with demo data in one transaction; return the rows per table.

    Parameters:
      conn: a psycopg2 connection; a transaction open on it is rolled back
        first, and the seed is committed on success.
      size: how many rows of each kind.
      seed: 0 .. 2**31-1; the same seed gives the same CRM.
      replace: empty the CRM tables first (TRUNCATE ... CASCADE: tables that
        reference them are emptied too; ``task_runs`` is kept).
      progress: called as ``progress(step, done, total)`` before each step
        (a table, then "indexes", then "analyze") and as
        ``progress("done", total, total)`` at the end.
      today: times are generated up to this date at 00:00 UTC; not in the
        future (default: the current UTC date).

    Raises CrmNotEmpty (a ValueError) when the CRM holds rows and not
    ``replace``; ValueError for a bad seed or date.
    """
    if not isinstance(size, DemoSize):
        raise TypeError(f"size must be a DemoSize (got {type(size).__name__})")
    _check_seed(seed)
    anchor = _anchor(today)
    report = progress or (lambda step, done, total: None)
    autocommit = conn.autocommit
    conn.rollback()
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            counts = _seed_in_transaction(cur, _Plan(size, seed, anchor), replace, report)
        conn.commit()
    except BaseException:
        if not conn.closed:
            conn.rollback()
        raise
    finally:
        if not conn.closed:
            conn.autocommit = autocommit
    report("done", len(STEPS), len(STEPS))
    return counts


# --------------------------------------------------------------------------
# vocabularies: weights are relative frequencies, so a few values dominate
# --------------------------------------------------------------------------

FIRST_NAMES = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
    "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen",
    "Daniel", "Lisa", "Matthew", "Nancy", "Anthony", "Sandra", "Mark", "Ashley", "Paul", "Emily",
    "Steven", "Michelle", "Andrew", "Amanda", "Kevin", "Melissa", "Brian", "Laura", "Lukas", "Anna",
    "Jonas", "Sophie", "Mateo", "Lucia", "Hugo", "Chloe", "Lars", "Ingrid", "Hiroshi", "Yuki",
    "Wei", "Mei", "Arjun", "Priya", "Omar", "Fatima", "Kwame", "Amara", "Diego", "Camila",
)
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
    "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores",
    "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts",
    "Mueller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Rossi", "Russo",
    "Ferrari", "Dubois", "Moreau", "Laurent", "Jansen", "De Vries", "Nielsen", "Hansen", "Johansson", "Lindqvist",
    "Kowalski", "Novak", "Tanaka", "Suzuki", "Sato", "Chen", "Wang", "Kim", "Patel", "Singh", "Okafor", "Mensah",
)
# Company names: "<Prefix><stem> <Trade><suffix>", e.g. "Silverridge Logistics GmbH".
COMPANY_PREFIXES = (
    "North", "South", "East", "West", "Blue", "Red", "Green", "Silver", "Golden", "Iron",
    "Bright", "Clear", "Swift", "Summit", "Harbor", "River", "Lake", "Pine", "Oak", "Maple",
    "Cedar", "Granite", "Crystal", "Eagle", "Falcon", "Pioneer", "Atlas", "Apex", "Vertex", "Nova",
    "Stellar", "Prime", "United", "Global", "Pacific", "Atlantic", "Alpine", "Coastal", "Metro", "Union",
)
COMPANY_STEMS = (
    "ridge", "valley", "peak", "point", "bridge", "gate", "field", "stone", "wave", "light",
    "path", "bay", "rock", "star", "crest", "forge", "works", "line", "way", "park",
    "hill", "brook", "shore", "haven", "port", "mill", "grove", "spring", "wind", "fire",
    "tree", "wood", "land", "sky", "sun", "moon", "cloud", "mark", "core", "base",
)
COMPANY_TRADES = (
    "Logistics", "Systems", "Analytics", "Foods", "Pharma", "Energy", "Capital", "Partners", "Solutions", "Software",
    "Networks", "Health", "Labs", "Manufacturing", "Retail", "Media", "Consulting", "Robotics", "Materials",
    "Insurance", "Telecom", "Motors", "Engineering", "Biotech", "Textiles", "Construction", "Hospitality", "Bank",
    "Security", "Ventures",
)
COMPANY_SUFFIXES = {
    " Inc.": 30, " LLC": 15, " Ltd": 12, " GmbH": 10, "": 10, " Corp.": 6, " Group": 5, " AG": 4, " S.A.": 4,
    " B.V.": 2, " Holdings": 2,
}
# Addresses of people without a company; RFC 2606 names, so no mail reaches anyone.
PERSONAL_DOMAINS = {"mail.example": 5, "inbox.example": 3, "webmail.example": 2}
STAFF_DOMAIN = "crm-demo.example"

# Most common first: picked with a skew towards the head of the list.
INDUSTRIES = (
    "Technology", "Financial Services", "Healthcare", "Manufacturing", "Retail", "Professional Services",
    "Education", "Telecommunications", "Energy", "Transportation & Logistics", "Media & Entertainment",
    "Real Estate", "Government", "Hospitality", "Agriculture",
)
REGIONS = {
    "North America East": 24, "North America West": 18, "UK & Ireland": 14, "DACH": 12, "Asia Pacific": 10,
    "Southern Europe": 9, "Latin America": 7, "Nordics": 6,
}
LEAD_STATUSES = {"New": 28, "Working": 18, "Nurturing": 14, "Qualified": 10, "Unqualified": 20, "Converted": 10}
LEAD_SOURCES = {
    "Web": 30, "Email Campaign": 14, "Referral": 12, "Advertisement": 10, "Social": 9, "Trade Show": 8,
    "Partner": 7, "Cold Call": 6, "Webinar": 4,
}
RATINGS = {"Hot": 15, "Warm": 35, "Cold": 50}
# stage -> (probability %, relative frequency)
DEAL_STAGES = {
    "Prospecting": (10, 18), "Qualification": (20, 14), "Needs Analysis": (40, 10), "Proposal": (60, 8),
    "Negotiation": (80, 5), "Closed Won": (100, 18), "Closed Lost": (0, 27),
}
DEAL_TYPES = {"New Business": 50, "Renewal": 20, "Upsell": 15, "Expansion": 10, "Pilot": 5}


def weighted_bag(weights: dict[str, int]) -> list[str]:
    """Each value repeated as often as its weight: a uniform pick from it honours the weights."""
    return [value for value, weight in weights.items() for _ in range(weight)]


def slug(text: str) -> str:
    """Lower-case letters and digits only, for e-mail addresses and user names."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


# --------------------------------------------------------------------------
# the plan: sizes of the role tree and the parameters every statement gets
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _RoleTree:
    """Shape of the role hierarchy (6 levels) for a number of users.

    Role ids, in order: 1 CEO; 2-4 VPs (Sales, Marketing, Customer Success);
    one Regional Sales Director per region; Demand Generation and Customer
    Success directors; Marketing Specialist and Customer Success Manager
    (together the ``leadership`` roles); then per sales team a Sales Manager
    (under the region's director), an Account Executive role under it and a
    Sales Development Rep role under that.
    """

    regions: int
    teams: int

    @classmethod
    def for_users(cls, users: int) -> _RoleTree:
        teams = max(1, users // 12)
        return cls(regions=min(len(REGIONS), teams), teams=teams)

    @property
    def leadership(self) -> int:
        return 8 + self.regions

    @property
    def roles(self) -> int:
        return self.leadership + 3 * self.teams

    def parameters(self) -> dict[str, object]:
        g, lead, t = self.regions, self.leadership, self.teams
        return {
            "regions_used": g, "teams": t, "leadership": lead,
            "demand_gen_role": g + 5, "success_director_role": g + 6,
            "marketing_role": g + 7, "success_role": g + 8,
            "managers_end": lead + t, "ae_base": lead + t, "sdr_base": lead + 2 * t,
        }


@dataclasses.dataclass(frozen=True)
class _Plan:
    size: DemoSize
    seed: int
    anchor: datetime.datetime

    @property
    def tree(self) -> _RoleTree:
        return _RoleTree.for_users(self.size.users)

    def parameters(self) -> dict[str, object]:
        size = dataclasses.asdict(self.size)
        stages = [stage for stage, (_, weight) in DEAL_STAGES.items() for _ in range(weight)]
        return {
            **size,
            **self.tree.parameters(),
            "anchor_date": self.anchor.date(),
            "history_seconds": HISTORY_DAYS * 86400,
            "region_names": list(REGIONS),
            "regions": weighted_bag(REGIONS),
            "industries": list(INDUSTRIES),
            "statuses": weighted_bag(LEAD_STATUSES),
            "sources": weighted_bag(LEAD_SOURCES),
            "ratings": weighted_bag(RATINGS),
            "stages": stages,
            "probabilities": [DEAL_STAGES[stage][0] for stage in stages],
            "deal_types": weighted_bag(DEAL_TYPES),
            "personal_domains": weighted_bag(PERSONAL_DOMAINS),
            "staff_domain": STAFF_DOMAIN,
        }


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 2**31 - 1:
        raise ValueError(f"seed must be a whole number from 0 to {2**31 - 1} (got {seed!r})")


def _anchor(today: datetime.date | None) -> datetime.datetime:
    """``today`` at 00:00 UTC: the moment every generated time is relative to."""
    utc_today = datetime.datetime.now(datetime.timezone.utc).date()
    if today is None:
        today = utc_today
    if isinstance(today, datetime.datetime) or not isinstance(today, datetime.date):
        raise ValueError(f"today must be a date (got {today!r})")  # noqa: TRY004 - like the other bad arguments
    if today > utc_today:
        raise ValueError(f"today must not be in the future (got {today}, the UTC date is {utc_today})")
    return datetime.datetime.combine(today, datetime.time(0), tzinfo=datetime.timezone.utc)


# --------------------------------------------------------------------------
# the transaction
# --------------------------------------------------------------------------


def _seed_in_transaction(cur: PgCursor, plan: _Plan, replace: bool, report: Progress) -> dict[str, int]:
    _configure_transaction(cur)
    _lock_crm_tables(cur)
    _empty_or_refuse(cur, replace)
    _create_helper_functions(cur, plan)
    deferred = _DeferredSchema.capture(cur)
    deferred.drop(cur)
    params = plan.parameters()
    counts: dict[str, int] = {}
    for done, table in enumerate(CRM_TABLES):
        report(table, done, len(STEPS))
        if table == "accounts":  # the users exist now; every later table picks owners among them
            params["owners"] = _owner_pool(cur, plan.tree)
        cur.execute(_INSERTS[table], params)
        counts[table] = cur.rowcount
        _advance_id_sequence(cur, table, counts[table])
    report("indexes", len(CRM_TABLES), len(STEPS))
    deferred.restore(cur)
    report("analyze", len(CRM_TABLES) + 1, len(STEPS))
    cur.execute(sql.SQL("ANALYZE {}").format(sql.SQL(", ").join(map(sql.Identifier, CRM_TABLES))))
    _drop_helper_functions(cur)
    return counts


def _configure_transaction(cur: PgCursor) -> None:
    """Settings for this transaction only: fast commit, room for index builds, no surprise timeouts."""
    cur.execute("SET LOCAL synchronous_commit = off")
    cur.execute("SET LOCAL maintenance_work_mem = '256MB'")
    cur.execute("SET LOCAL statement_timeout = 0")
    # A CRM in use (a long transaction on a CRM table) makes seeding fail
    # instead of hanging.
    cur.execute("SET LOCAL lock_timeout = '30s'")
    cur.execute("SET LOCAL TimeZone = 'UTC'")


def _lock_crm_tables(cur: PgCursor) -> None:
    """Exclusive from the start: the load alters the tables, and two seeders must not interleave."""
    cur.execute(
        sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
            sql.SQL(", ").join(map(sql.Identifier, CRM_TABLES))
        )
    )


def _tables_with_rows(cur: PgCursor) -> list[str]:
    checks = sql.SQL(", ").join(
        sql.SQL("EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table)) for table in CRM_TABLES
    )
    cur.execute(sql.SQL("SELECT {}").format(checks))
    return [table for table, has_rows in zip(CRM_TABLES, cur.fetchone()) if has_rows]


def _empty_or_refuse(cur: PgCursor, replace: bool) -> None:
    occupied = _tables_with_rows(cur)
    if not occupied:
        return
    if not replace:
        raise CrmNotEmpty(
            f"the CRM already holds data (in {', '.join(occupied)}); "
            "demo data goes into an empty CRM only: use --replace (replace=True) to empty it first"
        )
    cur.execute(
        sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
            sql.SQL(", ").join(map(sql.Identifier, CRM_TABLES))
        )
    )


def _owner_pool(cur: PgCursor, tree: _RoleTree) -> list[int]:
    """Users who own records, front-line sellers first, so a skewed pick favours them.

    Everyone below the VPs, inactive users included (their records wait to be
    reassigned, as in a real CRM), in a seed-dependent order.
    """
    cur.execute(
        """
        SELECT array_agg(id ORDER BY role_id <= %(managers_end)s, pg_temp.crmtasks_demo_rand(190, id), id)
        FROM users WHERE role_id > 4
        """,
        {"managers_end": tree.leadership + tree.teams},
    )
    return cur.fetchone()[0]


def _advance_id_sequence(cur: PgCursor, table: str, rows: int) -> None:
    """Rows were inserted with explicit ids 1..rows: the next default id must be rows + 1."""
    cur.execute(
        "SELECT setval(pg_get_serial_sequence(%s, 'id'), greatest(%s, 1), %s)",
        (table, rows, rows > 0),
    )


# --------------------------------------------------------------------------
# foreign keys and indexes, dropped for the load and rebuilt after it
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _DeferredSchema:
    """The CRM tables' foreign keys and plain (non-unique) indexes, as catalog DDL.

    Primary keys and unique constraints stay: ids are inserted in order, so
    their upkeep is cheap, and they guard the load.
    """

    # (schema, table, constraint name, definition)
    foreign_keys: tuple[tuple[str, str, str, str], ...]
    # (schema, index name, CREATE INDEX statement)
    indexes: tuple[tuple[str, str, str], ...]

    @classmethod
    def capture(cls, cur: PgCursor) -> _DeferredSchema:
        tables = list(CRM_TABLES)
        cur.execute(
            """
            SELECT n.nspname, t.relname, c.conname, pg_get_constraintdef(c.oid)
            FROM pg_constraint c
            JOIN pg_class t ON t.oid = c.conrelid
            JOIN pg_namespace n ON n.oid = t.relnamespace
            WHERE c.contype = 'f' AND c.conrelid = ANY (%s::regclass[])
            ORDER BY t.relname, c.conname
            """,
            (tables,),
        )
        foreign_keys = tuple(cur.fetchall())
        cur.execute(
            """
            SELECT n.nspname, ic.relname, pg_get_indexdef(i.indexrelid)
            FROM pg_index i
            JOIN pg_class ic ON ic.oid = i.indexrelid
            JOIN pg_namespace n ON n.oid = ic.relnamespace
            WHERE i.indrelid = ANY (%s::regclass[]) AND NOT i.indisunique
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
            ORDER BY ic.relname
            """,
            (tables,),
        )
        return cls(foreign_keys=foreign_keys, indexes=tuple(cur.fetchall()))

    def drop(self, cur: PgCursor) -> None:
        for schema, table, name, _ in self.foreign_keys:
            cur.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                    sql.Identifier(schema, table), sql.Identifier(name)
                )
            )
        for schema, name, _ in self.indexes:
            cur.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(schema, name)))

    def restore(self, cur: PgCursor) -> None:
        """Recreate the indexes, then the foreign keys (each validated by one join)."""
        for _, _, definition in self.indexes:
            cur.execute(sql.SQL(definition))
        for schema, table, name, definition in self.foreign_keys:
            cur.execute(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                    sql.Identifier(schema, table), sql.Identifier(name), sql.SQL(definition)
                )
            )


# --------------------------------------------------------------------------
# helper SQL functions (pg_temp: private to this session, dropped before commit)
#
# All are LANGUAGE sql IMMUTABLE one-expression functions, which PostgreSQL
# inlines into the calling statement: they cost no function call per row.
# ``salt`` keeps the numbers of different columns independent; functions
# that need several numbers use salt, salt + 1, ...
# --------------------------------------------------------------------------

_HELPER_FUNCTIONS = (
    # A uniform double in [0, 1): the top 53 bits of a seeded 64-bit hash of n.
    (
        "crmtasks_demo_rand(salt int, n bigint) RETURNS double precision",
        (
            "SELECT ((hashint8extended(n, {seed}::bigint * 1024 + salt) >> 11) & 9007199254740991)::double precision"
            " / 9007199254740992.0"
        ),
    ),
    # A uniform pick from bag (weights are given by repeating entries).
    (
        "crmtasks_demo_pick(bag anyarray, salt int, n bigint) RETURNS anyelement",
        "SELECT bag[1 + floor(pg_temp.crmtasks_demo_rand(salt, n) * cardinality(bag))::int]",
    ),
    # A pick favouring the head of bag: index = floor(r² · length), so the
    # first of k entries gets 1/sqrt(k) of the picks (Zipf-like).
    (
        "crmtasks_demo_pick_skewed(bag anyarray, salt int, n bigint) RETURNS anyelement",
        (
            "SELECT bag[1 + floor(pg_temp.crmtasks_demo_rand(salt, n) * pg_temp.crmtasks_demo_rand(salt, n)"
            " * cardinality(bag))::int]"
        ),
    ),
    # Seconds before the anchor at which row n of total was created: rows
    # spread over the history with linearly growing volume, and increasing n
    # means increasing time (ids behave like a serial column's).
    (
        "crmtasks_demo_age(salt int, n bigint, total bigint) RETURNS bigint",
        (
            "SELECT floor({history_seconds} * (1 - sqrt((n - 1 + pg_temp.crmtasks_demo_rand(salt, n))"
            " / total::double precision)))::bigint"
        ),
    ),
    # Seconds before the anchor of the last update of a row created age
    # seconds before it: 20% never updated, the rest uniformly since creation.
    (
        "crmtasks_demo_last_touch(salt int, n bigint, age bigint) RETURNS bigint",
        (
            "SELECT CASE WHEN pg_temp.crmtasks_demo_rand(salt, n) < 0.2 THEN age"
            " ELSE floor(age * pg_temp.crmtasks_demo_rand(salt + 1, n))::bigint END"
        ),
    ),
    (
        "crmtasks_demo_at(seconds_before_anchor bigint) RETURNS timestamptz",
        "SELECT to_timestamp({anchor_epoch} - seconds_before_anchor)",
    ),
    # A parent for row n of total, among the first rows of a table of
    # other_total that existed when row n was created (both tables' ids grow
    # with time the same way). 30% go to key accounts (every 50th id, 2% of
    # them), so a few parents collect many children; older parents collect
    # more too, having been around longer.
    (
        "crmtasks_demo_earlier_id(salt int, n bigint, total bigint, other_total bigint) RETURNS bigint",
        (
            "SELECT CASE WHEN pg_temp.crmtasks_demo_rand(salt, n) < 0.3 AND other_total * (n - 1) / total >= 50"
            " THEN 50 * (1 + floor(pg_temp.crmtasks_demo_rand(salt + 1, n) * (other_total * (n - 1) / total / 50)))"
            " ELSE 1 + floor(pg_temp.crmtasks_demo_rand(salt + 1, n) * greatest(1, other_total * (n - 1) / total))"
            " END::bigint"
        ),
    ),
    (
        "crmtasks_demo_person(salt int, n bigint) RETURNS text",
        (
            "SELECT {first_names}[1 + floor(pg_temp.crmtasks_demo_rand(salt, n) * {first_count})::int]"
            " || ' ' || {last_names}[1 + floor(pg_temp.crmtasks_demo_rand(salt + 1, n) * {last_count})::int]"
        ),
    ),
    # "first.last" of crmtasks_demo_person with the same salt.
    (
        "crmtasks_demo_handle(salt int, n bigint) RETURNS text",
        (
            "SELECT {first_slugs}[1 + floor(pg_temp.crmtasks_demo_rand(salt, n) * {first_count})::int]"
            " || '.' || {last_slugs}[1 + floor(pg_temp.crmtasks_demo_rand(salt + 1, n) * {last_count})::int]"
        ),
    ),
    (
        "crmtasks_demo_company(salt int, n bigint) RETURNS text",
        (
            "SELECT {prefixes}[1 + floor(pg_temp.crmtasks_demo_rand(salt, n) * {prefix_count})::int]"
            " || {stems}[1 + floor(pg_temp.crmtasks_demo_rand(salt + 1, n) * {stem_count})::int]"
            " || ' ' || {trades}[1 + floor(pg_temp.crmtasks_demo_rand(salt + 2, n) * {trade_count})::int]"
            " || pg_temp.crmtasks_demo_pick({suffixes}, salt + 3, n)"
        ),
    ),
    # The web domain of crmtasks_demo_company with the same salt.
    (
        "crmtasks_demo_domain(salt int, n bigint) RETURNS text",
        (
            "SELECT {prefix_slugs}[1 + floor(pg_temp.crmtasks_demo_rand(salt, n) * {prefix_count})::int]"
            " || {stems}[1 + floor(pg_temp.crmtasks_demo_rand(salt + 1, n) * {stem_count})::int]"
            " || '-' || {trade_slugs}[1 + floor(pg_temp.crmtasks_demo_rand(salt + 2, n) * {trade_count})::int]"
            " || '.example'"
        ),
    ),
)


def _helper_function_literals(plan: _Plan) -> dict[str, sql.Composable]:
    def array(values: Iterable[str]) -> sql.Composable:
        return sql.SQL("({}::text[])").format(sql.Literal(list(values)))

    return {
        "seed": sql.Literal(plan.seed),
        "anchor_epoch": sql.Literal(int(plan.anchor.timestamp())),
        "history_seconds": sql.Literal(HISTORY_DAYS * 86400),
        "first_names": array(FIRST_NAMES), "first_slugs": array(map(slug, FIRST_NAMES)),
        "first_count": sql.Literal(len(FIRST_NAMES)),
        "last_names": array(LAST_NAMES), "last_slugs": array(map(slug, LAST_NAMES)),
        "last_count": sql.Literal(len(LAST_NAMES)),
        "prefixes": array(COMPANY_PREFIXES), "prefix_slugs": array(map(slug, COMPANY_PREFIXES)),
        "prefix_count": sql.Literal(len(COMPANY_PREFIXES)),
        "stems": array(COMPANY_STEMS), "stem_count": sql.Literal(len(COMPANY_STEMS)),
        "trades": array(COMPANY_TRADES), "trade_slugs": array(map(slug, COMPANY_TRADES)),
        "trade_count": sql.Literal(len(COMPANY_TRADES)),
        "suffixes": array(weighted_bag(COMPANY_SUFFIXES)),
    }


def _create_helper_functions(cur: PgCursor, plan: _Plan) -> None:
    literals = _helper_function_literals(plan)
    for signature, body in _HELPER_FUNCTIONS:
        cur.execute(
            sql.SQL(
                "CREATE OR REPLACE FUNCTION pg_temp.{signature} LANGUAGE sql IMMUTABLE PARALLEL SAFE AS {body}"
            ).format(
                signature=sql.SQL(signature),
                body=sql.Literal(sql.SQL(body).format(**literals).as_string(cur)),
            )
        )


def _drop_helper_functions(cur: PgCursor) -> None:
    for signature, _ in _HELPER_FUNCTIONS:
        name_and_arguments = signature.split(" RETURNS ")[0]
        cur.execute(sql.SQL("DROP FUNCTION pg_temp.{}").format(sql.SQL(name_and_arguments)))


# --------------------------------------------------------------------------
# one INSERT ... SELECT per table (salts: users 1xx, accounts 2xx, contacts
# 3xx, leads 4xx, deals 5xx)
# --------------------------------------------------------------------------

_INSERTS = {
    # See _RoleTree for the ids. Teams are spread round-robin over the regions.
    "roles": """
        INSERT INTO roles (id, name, parent_id)
        SELECT id, name, parent_id FROM (
            VALUES (1, 'CEO', NULL::bigint), (2, 'VP Sales', 1), (3, 'VP Marketing', 1),
                   (4, 'VP Customer Success', 1),
                   (%(demand_gen_role)s, 'Director of Demand Generation', 3),
                   (%(success_director_role)s, 'Customer Success Director', 4),
                   (%(marketing_role)s, 'Marketing Specialist', %(demand_gen_role)s),
                   (%(success_role)s, 'Customer Success Manager', %(success_director_role)s)
        ) AS fixed (id, name, parent_id)
        UNION ALL
        SELECT 4 + g, 'Regional Sales Director, ' || (%(region_names)s::text[])[g], 2
        FROM generate_series(1, %(regions_used)s) AS g
        UNION ALL
        SELECT %(leadership)s + layer * %(teams)s + t,
               (ARRAY['Sales Manager', 'Account Executive', 'Sales Development Rep'])[layer + 1] || ', '
                   || (%(region_names)s::text[])[1 + (t - 1) %% %(regions_used)s]
                   || ' Team ' || (1 + (t - 1) / %(regions_used)s),
               CASE WHEN layer = 0 THEN 5 + (t - 1) %% %(regions_used)s
                    ELSE %(leadership)s + (layer - 1) * %(teams)s + t END
        FROM generate_series(1, %(teams)s) AS t, generate_series(0, 2) AS layer
    """,
    # The first users fill the leadership roles and one manager per team, in
    # role id order; the rest join a team (as account executive or SDR) or
    # marketing / customer success. About 5% are inactive (never leadership).
    "users": """
        INSERT INTO users (id, username, full_name, email, role_id, is_active, created_at)
        SELECT id, username, full_name, username || '@' || %(staff_domain)s, role_id, is_active, created_at
        FROM (
            SELECT p.*,
                   p.handle || CASE WHEN row_number() OVER same_handle = 1 THEN ''
                                    ELSE (row_number() OVER same_handle)::text END AS username
            FROM (
                SELECT n AS id,
                       pg_temp.crmtasks_demo_person(100, n) AS full_name,
                       pg_temp.crmtasks_demo_handle(100, n) AS handle,
                       CASE WHEN n <= %(managers_end)s THEN n
                            WHEN pg_temp.crmtasks_demo_rand(110, n) < 0.06 THEN %(marketing_role)s
                            WHEN pg_temp.crmtasks_demo_rand(110, n) < 0.12 THEN %(success_role)s
                            WHEN pg_temp.crmtasks_demo_rand(110, n) < 0.72
                                THEN %(ae_base)s + 1 + floor(pg_temp.crmtasks_demo_rand(111, n) * %(teams)s)::int
                            ELSE %(sdr_base)s + 1 + floor(pg_temp.crmtasks_demo_rand(111, n) * %(teams)s)::int
                       END AS role_id,
                       n <= %(leadership)s OR pg_temp.crmtasks_demo_rand(120, n) >= 0.05 AS is_active,
                       pg_temp.crmtasks_demo_at(
                           %(history_seconds)s + floor(pg_temp.crmtasks_demo_rand(130, n) * 3 * 365 * 86400)::bigint
                       ) AS created_at
                FROM generate_series(1, %(users)s) AS n
            ) p
            WINDOW same_handle AS (PARTITION BY p.handle ORDER BY p.id)
        ) u
    """,
    "accounts": """
        INSERT INTO accounts (id, name, industry, region, owner_id, created_at, updated_at)
        SELECT n,
               pg_temp.crmtasks_demo_company(200, n),
               CASE WHEN pg_temp.crmtasks_demo_rand(210, n) >= 0.05
                    THEN pg_temp.crmtasks_demo_pick_skewed(%(industries)s::text[], 211, n) END,
               CASE WHEN pg_temp.crmtasks_demo_rand(220, n) >= 0.03
                    THEN pg_temp.crmtasks_demo_pick(%(regions)s::text[], 221, n) END,
               pg_temp.crmtasks_demo_pick_skewed(%(owners)s::bigint[], 230, n),
               pg_temp.crmtasks_demo_at(age),
               pg_temp.crmtasks_demo_at(pg_temp.crmtasks_demo_last_touch(250, n, age))
        FROM (
            SELECT n, pg_temp.crmtasks_demo_age(240, n, %(accounts)s) AS age
            FROM generate_series(1, %(accounts)s) AS n
            OFFSET 0
        ) g
    """,
    # 10% without account, 12% without e-mail; the owner is usually the
    # account's; addresses use the account's domain.
    "contacts": """
        INSERT INTO contacts (id, name, email, account_id, owner_id, lead_source, created_at, updated_at)
        SELECT g.n,
               pg_temp.crmtasks_demo_person(300, g.n),
               CASE WHEN pg_temp.crmtasks_demo_rand(320, g.n) >= 0.12
                    THEN pg_temp.crmtasks_demo_handle(300, g.n) || '@'
                         || CASE WHEN g.account_id IS NULL
                                 THEN pg_temp.crmtasks_demo_pick(%(personal_domains)s::text[], 321, g.n)
                                 ELSE pg_temp.crmtasks_demo_domain(200, g.account_id) END
               END,
               g.account_id,
               CASE WHEN a.owner_id IS NOT NULL AND pg_temp.crmtasks_demo_rand(330, g.n) < 0.85 THEN a.owner_id
                    ELSE pg_temp.crmtasks_demo_pick_skewed(%(owners)s::bigint[], 331, g.n) END,
               CASE WHEN pg_temp.crmtasks_demo_rand(340, g.n) >= 0.20
                    THEN pg_temp.crmtasks_demo_pick(%(sources)s::text[], 341, g.n) END,
               pg_temp.crmtasks_demo_at(g.age),
               pg_temp.crmtasks_demo_at(pg_temp.crmtasks_demo_last_touch(360, g.n, g.age))
        FROM (
            SELECT n,
                   CASE WHEN pg_temp.crmtasks_demo_rand(310, n) >= 0.10
                        THEN pg_temp.crmtasks_demo_earlier_id(311, n, %(contacts)s, %(accounts)s) END AS account_id,
                   pg_temp.crmtasks_demo_age(350, n, %(contacts)s) AS age
            FROM generate_series(1, %(contacts)s) AS n
            OFFSET 0
        ) g
        LEFT JOIN accounts a ON a.id = g.account_id
    """,
    # Blank fields where sales people leave them blank: company 12%, e-mail
    # 7%, industry 25%, source 6%, rating 40%; 4% are unassigned (no owner).
    "leads": """
        INSERT INTO leads (id, name, company, email, status, industry, source, rating, owner_id,
                           created_at, updated_at)
        SELECT n,
               pg_temp.crmtasks_demo_person(400, n),
               CASE WHEN has_company THEN pg_temp.crmtasks_demo_company(410, n) END,
               CASE WHEN pg_temp.crmtasks_demo_rand(420, n) >= 0.07
                    THEN pg_temp.crmtasks_demo_handle(400, n) || '@'
                         || CASE WHEN has_company THEN pg_temp.crmtasks_demo_domain(410, n)
                                 ELSE pg_temp.crmtasks_demo_pick(%(personal_domains)s::text[], 421, n) END
               END,
               pg_temp.crmtasks_demo_pick(%(statuses)s::text[], 430, n),
               CASE WHEN pg_temp.crmtasks_demo_rand(440, n) >= 0.25
                    THEN pg_temp.crmtasks_demo_pick_skewed(%(industries)s::text[], 441, n) END,
               CASE WHEN pg_temp.crmtasks_demo_rand(450, n) >= 0.06
                    THEN pg_temp.crmtasks_demo_pick(%(sources)s::text[], 451, n) END,
               CASE WHEN pg_temp.crmtasks_demo_rand(460, n) >= 0.40
                    THEN pg_temp.crmtasks_demo_pick(%(ratings)s::text[], 461, n) END,
               CASE WHEN pg_temp.crmtasks_demo_rand(470, n) >= 0.04
                    THEN pg_temp.crmtasks_demo_pick_skewed(%(owners)s::bigint[], 471, n) END,
               pg_temp.crmtasks_demo_at(age),
               pg_temp.crmtasks_demo_at(pg_temp.crmtasks_demo_last_touch(490, n, age))
        FROM (
            SELECT n,
                   pg_temp.crmtasks_demo_rand(405, n) >= 0.12 AS has_company,
                   pg_temp.crmtasks_demo_age(480, n, %(leads)s) AS age
            FROM generate_series(1, %(leads)s) AS n
            OFFSET 0
        ) g
    """,
    # Stage and probability come from parallel bags with the same salt, so
    # they always match. Closed deals closed on their last update; open ones
    # mostly expect to close within 6 months, some are overdue, some have no
    # date. Amounts (whole hundreds, 1,000 to 2M, median ~50k) are often
    # blank in early stages.
    "deals": """
        INSERT INTO deals (id, name, account_id, owner_id, stage, amount, probability, close_date,
                           created_at, updated_at)
        SELECT g.n,
               coalesce(a.name, pg_temp.crmtasks_demo_company(560, g.n)) || ' - '
                   || pg_temp.crmtasks_demo_pick(%(deal_types)s::text[], 501, g.n),
               g.account_id,
               CASE WHEN a.owner_id IS NOT NULL AND pg_temp.crmtasks_demo_rand(530, g.n) < 0.80 THEN a.owner_id
                    ELSE pg_temp.crmtasks_demo_pick_skewed(%(owners)s::bigint[], 531, g.n) END,
               g.stage,
               CASE WHEN pg_temp.crmtasks_demo_rand(520, g.n)
                         < CASE WHEN g.stage IN ('Prospecting', 'Qualification') THEN 0.35 ELSE 0.03 END
                    THEN NULL
                    ELSE ((10 + floor(20000 * pg_temp.crmtasks_demo_rand(521, g.n) * pg_temp.crmtasks_demo_rand(522, g.n)
                                      * pg_temp.crmtasks_demo_rand(523, g.n) * pg_temp.crmtasks_demo_rand(524, g.n)))
                          * 100)::numeric(14, 2)
               END,
               g.probability,
               CASE WHEN g.stage IN ('Closed Won', 'Closed Lost')
                        THEN (pg_temp.crmtasks_demo_at(pg_temp.crmtasks_demo_last_touch(590, g.n, g.age))
                              AT TIME ZONE 'UTC')::date
                    WHEN pg_temp.crmtasks_demo_rand(550, g.n) < 0.60
                        THEN %(anchor_date)s::date + 1 + floor(pg_temp.crmtasks_demo_rand(551, g.n) * 180)::int
                    WHEN pg_temp.crmtasks_demo_rand(550, g.n) < 0.75
                        THEN %(anchor_date)s::date - 1
                             - floor(pg_temp.crmtasks_demo_rand(551, g.n) * least(g.age / 86400, 90))::int
               END,
               pg_temp.crmtasks_demo_at(g.age),
               pg_temp.crmtasks_demo_at(pg_temp.crmtasks_demo_last_touch(590, g.n, g.age))
        FROM (
            SELECT n,
                   CASE WHEN pg_temp.crmtasks_demo_rand(510, n) >= 0.03
                        THEN pg_temp.crmtasks_demo_earlier_id(511, n, %(deals)s, %(accounts)s) END AS account_id,
                   pg_temp.crmtasks_demo_pick(%(stages)s::text[], 502, n) AS stage,
                   pg_temp.crmtasks_demo_pick(%(probabilities)s::int[], 502, n) AS probability,
                   pg_temp.crmtasks_demo_age(580, n, %(deals)s) AS age
            FROM generate_series(1, %(deals)s) AS n
            OFFSET 0
        ) g
        LEFT JOIN accounts a ON a.id = g.account_id
    """,
}
