"""The ``crmtasks`` command (also ``python -m crmtasks``).

click gives us nested commands, typed options and help text for free; rich
draws progress bars and tables. Each command is small and calls library
functions that are tested on their own.
"""

from __future__ import annotations

import dataclasses

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
from crmtasks.report_command import report_command
from crmtasks.run import run_command
from crmtasks.settings import mask_url


@click.group()
@click.version_option(package_name="crmtasks")
def main() -> None:
    """crmtasks: a CRM's periodic PostgreSQL maintenance jobs on Dramatiq."""


main.add_command(run_command)
main.add_command(report_command)


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
            from crmtasks.demo import seed_audit

            try:
                with stderr.status(f"seeding {audit_rows:,} audit rows"):
                    counts.update(seed_audit(conn, audit_rows, seed_value))
            except (ValueError, PartitionConflict) as error:
                raise CommandError(str(error)) from None
    finally:
        conn.close()
    print_table("seeded", ["table", "rows"], [[table, f"{count:,}"] for table, count in counts.items()])


def _seed_crm(conn, crm_sizes, seed_value, replace) -> dict[str, int]:
    from crmtasks import demo as seeding

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
    """List the jobs: schedule (UTC), next three fire times, last run and state."""
    from crmtasks.overview import job_overviews

    settings = load_settings_or_exit()
    _require_schema(settings)
    overviews = job_overviews(settings)
    if as_json:
        print_json([dataclasses.asdict(o) for o in overviews])
        return
    if not overviews:
        stderr.print("no jobs are registered")
        return
    print_table("crmtasks jobs", ["task", "queue", "schedule (UTC)", "next runs", "state", "last run", "status"], [
        [o.task, o.queue, o.schedule, "\n".join(t.strftime("%Y-%m-%d %H:%M") for t in o.next_runs),
         o.state + (f" ({o.pause_note})" if o.pause_note else ""),
         o.last_started_at.strftime("%Y-%m-%d %H:%M:%S") if o.last_started_at else "never",
         (o.last_status or "") + (f" {o.last_duration_s:.1f} s" if o.last_duration_s is not None else "")]
        for o in overviews])


def _task_name(name: str) -> str:
    try:
        return registry.get(name).name
    except KeyError as error:
        raise CommandError(error.args[0]) from None


def _require_schema(settings) -> None:
    conn = _connect(settings)
    try:
        migrations.require_current(conn)
    except migrations.SchemaMissing as error:
        raise CommandError(str(error)) from None
    finally:
        conn.close()


@main.command()
@click.option("--json", "as_json", is_flag=True)
def check(as_json: bool) -> None:
    """Check Redis, PostgreSQL, schema, workers per queue, scheduler, overdue and failing jobs.

    Exit 0 when healthy, 1 with the list of problems.
    """
    from crmtasks.health import run_checks

    settings = load_settings_or_exit()
    findings = run_checks(settings)
    if as_json:
        print_json([dataclasses.asdict(f) for f in findings])
    else:
        for finding in findings:
            click.echo(f"{'ok     ' if finding.ok else 'PROBLEM'} {finding.area:<9} {finding.message}")
    if not all(f.ok for f in findings):
        raise SystemExit(1)


@main.command()
@click.argument("job")
@click.option("--note", default="", help="Why it is paused (shown in listings and the dashboard).")
def pause(job: str, note: str) -> None:
    """Pause a job: schedulers stop enqueuing it and workers skip its messages."""
    from crmtasks import scheduling

    settings = load_settings_or_exit()
    task = _task_name(job)
    _require_schema(settings)
    scheduling.pause(task, note)
    click.echo(f"{task}: paused" + (f" ({note})" if note else ""))


@main.command()
@click.argument("job")
def resume(job: str) -> None:
    """Resume a paused job."""
    from crmtasks import scheduling

    settings = load_settings_or_exit()
    task = _task_name(job)
    _require_schema(settings)
    click.echo(f"{task}: resumed" if scheduling.resume(task) else f"{task}: was not paused")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535), help="Port to bind.")
def dashboard(host: str, port: int) -> None:
    """Serve the web dashboard (jobs, run history, run now, queues and dead letters) with waitress."""
    from crmtasks.web.app import UnsafeBinding, serve

    settings = load_settings_or_exit()
    try:
        serve(settings, host, port)
    except UnsafeBinding as error:
        raise CommandError(str(error)) from None


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


@main.group(name="sharing")
def sharing_group() -> None:
    """Check record access and show the sharing model (defaults, rules, a user's compiled visibility)."""


@sharing_group.command(name="check")
@click.argument("user_id", type=int)
@click.argument("entity", type=click.Choice(["leads", "deals", "accounts", "contacts"]))
@click.argument("record_id", type=int)
@click.option("--level", type=click.Choice(["read", "edit"]), default="read", show_default=True)
def sharing_check(user_id: int, entity: str, record_id: int, level: str) -> None:
    """Say whether USER_ID may LEVEL record RECORD_ID of ENTITY now; exit 0 when allowed, 1 when denied."""
    from crmtasks import sharing

    settings = load_settings_or_exit()
    _require_schema(settings)
    allowed = sharing.can_access(user_id, entity, record_id, level)
    click.echo(f"user {user_id} {'may' if allowed else 'may NOT'} {level} {entity} {record_id}")
    if not allowed:
        raise SystemExit(1)


@sharing_group.command(name="show")
@click.argument("user_id", type=int, required=False)
@click.option("--json", "as_json", is_flag=True)
def sharing_show(user_id: int | None, as_json: bool) -> None:
    """Show the defaults and rules, or with USER_ID what that user's compiled visibility opens."""
    from crmtasks import sharing
    from crmtasks.sharing import rules

    settings = load_settings_or_exit()
    _require_schema(settings)
    if user_id is not None:
        summary = sharing.visibility(user_id).summary()
        if as_json:
            print_json(summary)
            return
        print_table(f"user {user_id} (epoch {summary['epoch']}, {'active' if summary['active'] else 'INACTIVE'})",
                    ["entity", "default grants", "owners read", "owners edited", "criteria read", "criteria edited"],
                    [[name, e["public"] or "-", e["read_owners"], e["edit_owners"], e["read_criteria"],
                      e["edit_criteria"]] for name, e in summary["entities"].items()])
        return
    report = {"defaults": rules.defaults(), "rules": rules.list_rules()}
    if as_json:
        print_json(report)
        return
    print_table("organization-wide defaults", ["entity", "access"], [list(item) for item in report["defaults"].items()])
    print_table("sharing rules", ["id", "name", "entity", "shares", "with role", "access"], [
        [r["id"], r["name"], r["entity"],
         (f"owned by role {r['owner_role']}" + (" and below" if r["owner_include_subordinates"] else ""))
         if r["kind"] == "owner" else f"{r['field']} = {r['value']!r}",
         f"{r['grantee_role']}" + (" and below" if r["grantee_include_subordinates"] else ""), r["access"]]
        for r in report["rules"]])


if __name__ == "__main__":
    main()
