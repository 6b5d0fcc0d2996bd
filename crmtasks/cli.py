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
from crmtasks.console import (
    CommandError,
    load_settings_or_exit,
    print_json,
    print_search_result,
    print_table,
    seed_progress,
    stderr,
)
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
@click.option("--seed", "seed_value", type=int, default=42, show_default=True,
              help="Random seed: the same seed gives the same CRM.")
@click.option("--replace", is_flag=True, help="Empty the CRM tables first (never task_runs).")
def seed(users, accounts, contacts, leads, deals, seed_value, replace) -> None:
    """Fill the CRM with realistic demo data, generated inside PostgreSQL."""
    from crmtasks import seed as seeding

    settings = load_settings_or_exit()
    defaults = seeding.DemoSize()
    try:
        size = seeding.DemoSize(
            users=users or defaults.users, accounts=accounts or defaults.accounts,
            contacts=contacts or defaults.contacts, leads=leads or defaults.leads, deals=deals or defaults.deals,
        )
    except ValueError as error:
        raise CommandError(str(error)) from None
    conn = _connect(settings)
    try:
        try:
            migrations.require_current(conn)
        except migrations.SchemaMissing as error:
            raise CommandError(str(error)) from None
        try:
            with seed_progress() as progress:
                counts = seeding.seed_demo(conn, size, seed_value, replace=replace, progress=progress)
        except ValueError as error:
            raise CommandError(str(error)) from None
    finally:
        conn.close()
    print_table("seeded", ["table", "rows"], [[table, f"{count:,}"] for table, count in counts.items()])


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


@main.command()
@click.argument("entity")
@click.option("--filter", "filter_texts", multiple=True, metavar="FIELD=VALUE",
              help="Facet field=value (repeat a field for any of several values; field= for no value), "
                   "or a range: field>=value, field<value, ...")
@click.option("--q", help="Text to find in names (leads: name, company, email), at least 3 characters.")
@click.option("--page", type=int, default=1, show_default=True)
@click.option("--per-page", type=int, default=25, show_default=True)
@click.option("--order-by", help="Sort column, '-' prefix for descending (default -id: newest first).")
@click.option("--live", is_flag=True, help="Count live even when precomputed counts could answer.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def search(entity, filter_texts, q, page, per_page, order_by, live, as_json) -> None:
    """Faceted search of ENTITY (leads, deals, accounts, contacts): a page of records and counts per facet value."""
    from crmtasks.bootstrap import prepare_database
    from crmtasks.search import faceted_search
    from crmtasks.search_request import filters_from_text

    settings = load_settings_or_exit()
    try:
        filters = filters_from_text(entity, list(filter_texts))
    except ValueError as error:
        raise CommandError(str(error)) from None
    try:
        prepare_database(settings, seed_demo_if_empty=False)
    except NotReady as error:
        raise CommandError(str(error)) from None
    try:
        result = faceted_search(entity, filters, q=q, page=page, per_page=per_page, order_by=order_by,
                                allow_precomputed=not live)
    except ValueError as error:
        raise CommandError(str(error)) from None
    if as_json:
        print_json(result.as_dict())
        return
    print_search_result(result)


if __name__ == "__main__":
    main()
