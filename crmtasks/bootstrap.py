"""Getting a process ready to run jobs: reachable database, current schema, demo data on first run.

On the embedded default the database is ours, so a first run migrates and
seeds a demo CRM by itself. A configured DATABASE_URL belongs to the user:
we never write demo data there, and a missing schema is reported with the
command that fixes it.
"""

from __future__ import annotations

import dataclasses

import psycopg2

from crmtasks import migrate, services
from crmtasks.settings import Settings, mask_url

# pg_advisory_lock key held while the embedded database is prepared: every
# worker and scheduler process of `honcho start` prepares it at once, and
# only the first may seed (the others wait, then find it seeded).
BOOTSTRAP_LOCK_KEY = int.from_bytes(b"crmboot!", "big")

# Audit rows of the first-run demo: enough for every month of 24 to have some,
# so the audit job has old partitions to archive.
DEMO_AUDIT_ROWS = 200_000


class NotReady(RuntimeError):
    """The database cannot be used as it is; the message says what to do (one line)."""


@dataclasses.dataclass
class Preparation:
    database_url: str
    migrations_applied: list[str]
    demo_seeded: dict[str, int] | None


def connect_checked(url: str, *, variable: str = "DATABASE_URL") -> psycopg2.extensions.connection:
    """A psycopg2 connection, or NotReady with one line naming the (masked) URL and the cause."""
    try:
        return psycopg2.connect(url, connect_timeout=5, application_name="crmtasks")
    except psycopg2.Error as error:
        cause = (str(error).strip().splitlines() or ["unknown error"])[0]
        raise NotReady(f"cannot connect to {variable} {mask_url(url)}: {cause}") from None


def prepare_database(settings: Settings, *, seed_demo_if_empty: bool = True, progress=None) -> Preparation:
    """Make the database usable for jobs, or raise NotReady.

    Embedded default: apply pending migrations, then seed the default demo
    CRM when it holds no records (``progress`` is passed to the seeder).
    Safe to call from many processes at once: they take turns, and only the
    first seeds. Configured database: only check that the schema is current.
    """
    url = services.database_url(settings)
    conn = connect_checked(url)
    try:
        if not settings.embedded_database:
            try:
                migrate.require_current(conn)
            except migrate.SchemaMissing as error:
                raise NotReady(str(error)) from None
            return Preparation(url, [], None)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (BOOTSTRAP_LOCK_KEY,))  # freed when conn closes
        applied = [f"{m.version:04d}_{m.name}" for m in migrate.migrate(conn)]
        seeded = None
        if seed_demo_if_empty:
            from crmtasks import demo as seed

            if seed.crm_is_empty(conn):
                from crmtasks.demo import seed_audit

                seeded = seed.seed_demo(conn, seed.DemoSize.first_run(), progress=progress)
                seeded["audit_log"] = seed_audit(conn, DEMO_AUDIT_ROWS)["audit_log"]
        return Preparation(url, applied, seeded)
    finally:
        conn.close()
