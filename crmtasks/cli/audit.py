"""``crmtasks audit status|verify|restore``: the audit log's partitions and archives."""

from __future__ import annotations

import click

from crmtasks.audit import status
from crmtasks.audit.months import Month
from crmtasks.audit.restore import RestoreRefused, restore_month
from crmtasks.audit.status import verify_archives
from crmtasks.audit.stores import StoreError
from crmtasks.cli.common import (
    CommandError,
    load_settings_or_exit,
    migrated_connection,
    print_json,
    print_table,
    stderr,
)


@click.group(name="audit")
def audit_group() -> None:
    """Inspect, verify and restore the audit log's partitions and archives."""


@audit_group.command(name="status")
@click.option("--json", "as_json", is_flag=True)
def audit_status(as_json: bool) -> None:
    """List audit_log's partitions (range, rows, size), months being archived, and the archives."""
    settings = load_settings_or_exit()
    conn = migrated_connection(settings)
    try:
        report = {"partitions": status.partition_rows(conn), "in_progress": status.unfinished_months(conn),
                  "archives": status.archives(conn, settings),
                  "archive_url": settings.archive_url, "hold": settings.audit_hold,
                  # kept for scripts that read it: the directory, when the store is one
                  "archive_dir": None if settings.archive_bucket else str(settings.audit_archive_dir)}
    except StoreError as error:
        raise CommandError(str(error)) from None
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
    print_table(f"archives in {report['archive_url']}",
                ["month", "rows", "ids", "bytes", "archived at", "ledger", "state"],
                [[a["month"], a["rows"], a["ids"], a["bytes"], a["archived_at"], a["ledger"], a["state"]]
                 for a in report["archives"]])
    lost = [a["month"] for a in report["archives"] if a["ledger"] and a["state"] != "complete"]
    if lost:
        stderr.print(f"archives the ledger records but the archive store lacks or has damaged: {', '.join(lost)} "
                     f"(see the state column; `crmtasks audit verify` re-reads every archive)")
    if settings.audit_hold:
        stderr.print("legal hold is ON (CRMTASKS_AUDIT_HOLD): no audit row leaves the database")


@audit_group.command(name="verify")
@click.option("--json", "as_json", is_flag=True)
def audit_verify(as_json: bool) -> None:
    """Re-read every archive, and every month the ledger says was archived; exit 1 if any fails."""
    settings = load_settings_or_exit()
    conn = migrated_connection(settings)
    try:
        checks = verify_archives(conn, settings)
    except StoreError as error:
        raise CommandError(str(error)) from None
    finally:
        conn.close()
    if as_json:
        print_json([vars(check) for check in checks])
    else:
        print_table(f"archives in {settings.archive_url}", ["month", "result", "rows", "problem"],
                    [[c.month, "ok" if c.ok else "FAILED", c.rows, c.problem] for c in checks])
    if any(not check.ok for check in checks):
        raise SystemExit(1)


@audit_group.command(name="restore")
@click.argument("month", metavar="YYYY-MM")
def audit_restore(month: str) -> None:
    """Verify the archive of MONTH and re-attach it to audit_log (refuses on a mismatch or an overlap)."""
    settings = load_settings_or_exit()
    try:
        wanted = Month.parse(month)
    except ValueError as error:
        raise CommandError(str(error)) from None
    conn = migrated_connection(settings)
    try:
        result = restore_month(conn, settings, wanted)
    except RestoreRefused as refusal:
        raise CommandError(f"restore refused: {refusal}") from None
    except StoreError as error:
        raise CommandError(f"restore failed: {error}") from None
    finally:
        conn.close()
    click.echo(f"restored {result.month}: {result.rows:,} rows (ids {result.min_id}..{result.max_id}) "
               f"re-attached as {result.partition}")
