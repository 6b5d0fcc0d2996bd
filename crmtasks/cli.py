"""The ``crmtasks`` command (also ``python -m crmtasks``).

click gives us nested commands, typed options and help text for free; rich
draws progress bars and tables. Each command is small and calls library
functions that are tested on their own.
"""

from __future__ import annotations

import click

from crmtasks import migrate as migrations
from crmtasks import registry, services
from crmtasks.bootstrap import NotReady, connect_checked
from crmtasks.console import CommandError, load_settings_or_exit, print_json, print_table, seed_progress, stderr
from crmtasks.run import run_command
from crmtasks.settings import mask_url


@click.group()
@click.version_option(package_name="crmtasks")
def main() -> None:
    """crmtasks: a CRM's periodic PostgreSQL maintenance jobs on Dramatiq."""


main.add_command(run_command)


def _connect(settings):
    try:
        return connect_checked(services.database_url(settings))
    except NotReady as error:
        raise CommandError(str(error)) from None


@main.command()
def migrate() -> None:
    """Apply pending schema migrations (safe to run from several processes at once)."""
    settings = load_settings_or_exit()
    conn = _connect(settings)
    try:
        applied = migrations.migrate(conn)
    finally:
        conn.close()
    if applied:
        for migration in applied:
            click.echo(f"applied {migration.version:04d}_{migration.name}")
    else:
        click.echo("schema is up to date")


@main.command()
@click.option("--users", type=click.IntRange(min=1), help="Number of users.")
@click.option("--accounts", type=click.IntRange(min=1), help="Number of accounts.")
@click.option("--contacts", type=click.IntRange(min=1), help="Number of contacts.")
@click.option("--leads", type=click.IntRange(min=1), help="Number of leads.")
@click.option("--deals", type=click.IntRange(min=1), help="Number of deals.")
@click.option("--audit", "audit_rows", type=click.IntRange(min=1), metavar="N",
              help="Also add N audit rows spread over the last 24 months (alone: only audit rows).")
@click.option("--seed", "seed_value", type=int, default=42, show_default=True,
              help="Random seed: the same seed gives the same CRM.")
@click.option("--replace", is_flag=True, help="Empty the CRM tables first (never task_runs, never audit_log).")
def seed(users, accounts, contacts, leads, deals, audit_rows, seed_value, replace) -> None:
    """Fill the CRM with realistic demo data, generated inside PostgreSQL."""
    settings = load_settings_or_exit()
    crm_sizes = (users, accounts, contacts, leads, deals)
    seed_crm = audit_rows is None or any(crm_sizes) or replace
    conn = _connect(settings)
    counts: dict[str, int] = {}
    try:
        try:
            migrations.require_current(conn)
        except migrations.SchemaMissing as error:
            raise CommandError(str(error)) from None
        if seed_crm:
            counts.update(_seed_crm(conn, crm_sizes, seed_value, replace))
        if audit_rows is not None:
            from crmtasks.audit.partitions import PartitionConflict
            from crmtasks.audit.seed import seed_audit

            try:
                with stderr.status(f"seeding {audit_rows:,} audit rows"):
                    counts.update(seed_audit(conn, audit_rows, seed_value))
            except (ValueError, PartitionConflict) as error:
                raise CommandError(str(error)) from None
    finally:
        conn.close()
    print_table("seeded", ["table", "rows"], [[table, f"{count:,}"] for table, count in counts.items()])


def _seed_crm(conn, crm_sizes, seed_value, replace) -> dict[str, int]:
    from crmtasks import seed as seeding

    users, accounts, contacts, leads, deals = crm_sizes
    defaults = seeding.DemoSize()
    try:
        size = seeding.DemoSize(
            users=users or defaults.users, accounts=accounts or defaults.accounts,
            contacts=contacts or defaults.contacts, leads=leads or defaults.leads, deals=deals or defaults.deals,
        )
        with seed_progress() as progress:
            return seeding.seed_demo(conn, size, seed_value, replace=replace, progress=progress)
    except ValueError as error:
        raise CommandError(str(error)) from None


@main.group()
def services_group() -> None:
    """Show or stop the embedded PostgreSQL and Redis."""


main.add_command(services_group, name="services")


@services_group.command(name="status")
@click.option("--json", "as_json", is_flag=True)
def services_status(as_json: bool) -> None:
    """Show the embedded servers under CRMTASKS_HOME and the configured URLs."""
    from crmtasks import embedded

    settings = load_settings_or_exit()
    statuses = embedded.status(settings.home)
    configured = {"postgres": settings.database_url, "redis": settings.redis_url}
    rows = []
    for status in statuses:
        in_use = "configured: " + mask_url(configured[status.name]) if configured[status.name] else "embedded"
        rows.append({"service": status.name, "running": status.running, "pid": status.pid,
                     "url": mask_url(status.url) if status.url else None, "data_dir": str(status.data_dir),
                     "in_use": in_use})
    if as_json:
        print_json(rows)
    else:
        print_table(f"embedded services in {settings.home}", list(rows[0]) if rows else [],
                    [list(row.values()) for row in rows])


@services_group.command(name="stop")
def services_stop() -> None:
    """Stop the embedded servers under CRMTASKS_HOME (every crmtasks process on this machine shares them)."""
    from crmtasks import embedded

    settings = load_settings_or_exit()
    for status in embedded.stop(settings.home):
        click.echo(f"{status.name}: {'running' if status.running else 'stopped'}")


@main.group(name="audit")
def audit_group() -> None:
    """Inspect, verify and restore the audit log's partitions and archives."""


def _audit_connection(settings):
    conn = _connect(settings)
    try:
        migrations.require_current(conn)
    except migrations.SchemaMissing as error:
        conn.close()
        raise CommandError(str(error)) from None
    return conn


@audit_group.command(name="status")
@click.option("--json", "as_json", is_flag=True)
def audit_status(as_json: bool) -> None:
    """List audit_log's partitions (range, rows, size), months being archived, and the archives."""
    from crmtasks.audit import status

    settings = load_settings_or_exit()
    conn = _audit_connection(settings)
    try:
        report = {"partitions": status.partition_rows(conn), "in_progress": status.unfinished_months(conn),
                  "archives": status.archives(settings.audit_archive_dir),
                  "archive_dir": str(settings.audit_archive_dir), "hold": settings.audit_hold}
    finally:
        conn.close()
    if as_json:
        print_json(report)
        return
    print_table("audit_log partitions", ["partition", "from", "to", "state", "rows", "bytes"],
                [[p["partition"], p["from"][:16], p["to"][:16], p["state"], f"{p['rows']:,}", f"{p['bytes']:,}"]
                 for p in report["partitions"]])
    if report["in_progress"]:
        print_table("retention in progress (the next run resumes)", ["month", "table", "state", "policy", "since"],
                    [list(row.values()) for row in report["in_progress"]])
    print_table(f"archives in {report['archive_dir']}", ["month", "rows", "ids", "bytes", "archived at", "state"],
                [[a["month"], a["rows"], a["ids"], a["bytes"], a["archived_at"], a["state"]]
                 for a in report["archives"]])
    if settings.audit_hold:
        stderr.print("legal hold is ON (CRMTASKS_AUDIT_HOLD): no audit row leaves the database")


@audit_group.command(name="verify")
@click.option("--json", "as_json", is_flag=True)
def audit_verify(as_json: bool) -> None:
    """Re-read every archive and check it against its manifest; exit 1 if any fails."""
    from crmtasks.audit.status import verify_archives

    settings = load_settings_or_exit()
    checks = verify_archives(settings)
    if as_json:
        print_json([vars(check) for check in checks])
    else:
        print_table(f"archives in {settings.audit_archive_dir}", ["month", "result", "rows", "problem"],
                    [[c.month, "ok" if c.ok else "FAILED", c.rows, c.problem] for c in checks])
    if any(not check.ok for check in checks):
        raise SystemExit(1)


@audit_group.command(name="restore")
@click.argument("month", metavar="YYYY-MM")
def audit_restore(month: str) -> None:
    """Verify the archive of MONTH and re-attach it to audit_log (refuses on a mismatch or an overlap)."""
    from crmtasks.audit.months import Month
    from crmtasks.audit.restore import RestoreRefused, restore_month

    settings = load_settings_or_exit()
    try:
        wanted = Month.parse(month)
    except ValueError as error:
        raise CommandError(str(error)) from None
    conn = _audit_connection(settings)
    try:
        result = restore_month(conn, settings, wanted)
    except RestoreRefused as refusal:
        raise CommandError(f"restore refused: {refusal}") from None
    finally:
        conn.close()
    click.echo(f"restored {result.month}: {result.rows:,} rows (ids {result.min_id}..{result.max_id}) "
               f"re-attached as {result.partition}")


@main.command(name="tasks")
@click.option("--json", "as_json", is_flag=True)
def list_tasks(as_json: bool) -> None:
    """List the registered jobs with their schedule, queue and limits."""
    settings = load_settings_or_exit()
    rows = [{"task": s.name, "actor": s.actor_name, "schedule": settings.schedule(s.name), "queue": s.queue,
             "time_limit_s": s.time_limit_s, "max_retries": s.max_retries, "description": s.description}
            for s in registry.TASKS]
    if as_json:
        print_json(rows)
    elif not rows:
        stderr.print("no jobs are registered")
    else:
        print_table("crmtasks jobs", list(rows[0]), [list(row.values()) for row in rows])


if __name__ == "__main__":
    main()
