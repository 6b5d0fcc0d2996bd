"""``crmtasks seed``: fill the CRM with demo data (and demo audit rows), generated inside PostgreSQL."""

from __future__ import annotations

import click

from crmtasks.audit.partitions import PartitionConflict
from crmtasks.cli.common import (
    CommandError,
    WholeNumber,
    demo_data_progress,
    load_settings_or_exit,
    migrated_connection,
    print_table,
    stderr,
)
from crmtasks.demo import DemoSize, seed_audit, seed_demo


@click.command(name="seed")
@click.option("--users", type=WholeNumber(least=1), help="Number of users.")
@click.option("--accounts", type=WholeNumber(least=1), help="Number of accounts.")
@click.option("--contacts", type=WholeNumber(least=1), help="Number of contacts.")
@click.option("--leads", type=WholeNumber(least=1), help="Number of leads.")
@click.option("--deals", type=WholeNumber(least=1), help="Number of deals.")
@click.option("--audit", "audit_rows", type=WholeNumber(least=1), metavar="N",
              help="Also add N audit rows spread over the last 24 months (alone: only audit rows).")
@click.option("--seed", "seed_value", type=WholeNumber(), default=42, show_default=True,
              help="Random seed: the same seed gives the same CRM.")
@click.option("--replace", is_flag=True, help="Empty the CRM tables first (never task_runs, never audit_log).")
def seed_command(users, accounts, contacts, leads, deals, audit_rows, seed_value, replace) -> None:
    """Fill the CRM with realistic demo data, generated inside PostgreSQL."""
    settings = load_settings_or_exit()
    crm_sizes = (users, accounts, contacts, leads, deals)
    seed_crm = audit_rows is None or any(crm_sizes) or replace
    conn = migrated_connection(settings)
    counts: dict[str, int] = {}
    try:
        if seed_crm:
            counts.update(_seed_crm(conn, crm_sizes, seed_value, replace))
        if audit_rows is not None:

            try:
                with stderr.status(f"seeding {audit_rows:,} audit rows"):
                    counts.update(seed_audit(conn, audit_rows, seed_value))
            except (ValueError, PartitionConflict) as error:
                raise CommandError(str(error)) from None
    finally:
        conn.close()
    print_table("seeded", ["table", "rows"], [[table, f"{count:,}"] for table, count in counts.items()])


def _seed_crm(conn, crm_sizes, seed_value, replace) -> dict[str, int]:
    users, accounts, contacts, leads, deals = crm_sizes
    defaults = DemoSize()
    try:
        size = DemoSize(
            users=users or defaults.users, accounts=accounts or defaults.accounts,
            contacts=contacts or defaults.contacts, leads=leads or defaults.leads, deals=deals or defaults.deals,
        )
        with demo_data_progress() as progress:
            return seed_demo(conn, size, seed_value, replace=replace, progress=progress)
    except ValueError as error:
        raise CommandError(str(error)) from None
