"""``crmtasks report NAME [--owner ID] [--from DATE] [--to DATE] [--format table|json|csv] [--plot FILE.png]``.

Prints one report from the precomputed aggregates. Every mistake (unknown
report, bad owner, date, range, grain, stage, format or plot file) is one
line on stderr and exit code 2; options are validated here rather than by
click's types so that no error prints a usage block.
"""

from __future__ import annotations

import decimal
import sys
import tempfile
from pathlib import Path

import click

from crmtasks import reports
from crmtasks.cli.common import (
    CommandError,
    load_settings_or_exit,
    migrated_connection,
    print_table,
    stderr,
)
from crmtasks.reports import periods, queries, render
from crmtasks.user_text import shown, whole_number

FORMATS = ("table", "json", "csv")
_RATE_COLUMNS = ("win_rate", "conversion_rate")


@click.command(name="report")
@click.argument("name", metavar="NAME")
@click.option("--owner", "owner_text", metavar="ID", help="Only this owner's records (user id).")
@click.option("--from", "from_text", metavar="DATE", help="First day: YYYY-MM-DD, or a whole YYYY-MM, YYYY-Qn, YYYY.")
@click.option("--to", "to_text", metavar="DATE", help="Last day: YYYY-MM-DD, or a whole YYYY-MM, YYYY-Qn, YYYY.")
@click.option("--grain", metavar="month|quarter|year", help="Period of the rows (default: the report's own).")
@click.option("--stage", metavar="STAGE", help="pipeline: one open stage; sales_cycle: one closed stage.")
@click.option("--by-owner", is_flag=True, help="One row per owner instead of all owners together.")
@click.option("--format", "output_format", default="table", metavar="table|json|csv", show_default=True)
@click.option("--plot", "plot_path", metavar="FILE.png", help="Also draw a chart (pipeline, revenue, win_rate).")
def report_command(name, owner_text, from_text, to_text, grain, stage, by_owner, output_format, plot_path) -> None:
    """Print report NAME: pipeline, revenue, win_rate, sales_cycle, lead_conversion or accounts."""
    try:
        spec = reports.get(name)
        filters = _filters(spec, owner_text, from_text, to_text, grain, stage, by_owner)
        plot_file = _plot_file(spec, plot_path, filters)
    except reports.ReportError as error:
        raise CommandError(str(error)) from None
    if output_format not in FORMATS:
        raise CommandError(f"--format {output_format!r} is not one of {', '.join(FORMATS)}")

    settings = load_settings_or_exit()
    conn = migrated_connection(settings)
    try:
        conn.autocommit = True
        try:
            data = report = None
            if output_format in render.FORMATS:
                # The bytes kept for this refresh generation (one round trip), or the report read, formatted, kept.
                data = render.query_bytes(queries.query_for(spec.name, conn, **filters), output_format, conn)
            if data is None or plot_file is not None:
                report = spec.function(connection=conn, **filters)
        except (reports.ReportError, reports.AggregatesNotReady) as error:
            raise CommandError(str(error)) from None
    finally:
        conn.close()

    _print(report, output_format, data)
    if plot_file is not None:
        # Imported here: matplotlib takes about half a second to load, and only --plot needs it.
        from crmtasks.reports import plots

        try:
            plots.plot(report, plot_file)
        except reports.ReportError as error:  # the disk filled up or the directory went away since the check
            raise CommandError(str(error)) from None
        stderr.print(f"plot written to {shown(str(plot_file))}")


def _filters(spec, owner_text, from_text, to_text, grain, stage, by_owner) -> dict:
    filters: dict = {"by_owner": by_owner}
    if owner_text is not None:
        try:
            filters["owner"] = whole_number(owner_text, "--owner")
        except ValueError:
            raise reports.ReportError(f"--owner '{shown(owner_text)}' is not a user id (a whole number)") from None
        if filters["owner"] < 1:
            raise reports.ReportError(f"--owner {owner_text!r} is not a user id (a whole number from 1)")
    if spec.periodic:
        filters["grain"] = periods.check_grain(grain or spec.default_grain)
        if from_text is not None:
            filters["date_from"] = periods.parse_bound(from_text, end=False, option="--from")
        if to_text is not None:
            filters["date_to"] = periods.parse_bound(to_text, end=True, option="--to")
        periods.check_range(filters.get("date_from"), filters.get("date_to"), filters["grain"])
    else:
        for option, value in (("--from", from_text), ("--to", to_text), ("--grain", grain)):
            if value is not None:
                raise reports.ReportError(f"{option} does not apply to {spec.name}: it reports the current state")
    if stage is not None:
        if not spec.stage:
            raise reports.ReportError(f"--stage does not apply to {spec.name}")
        filters["stage"] = stage
    return filters


def _plot_file(spec, plot_path, filters) -> Path | None:
    if plot_path is None:
        return None
    if not spec.plot:
        plottable = ", ".join(name for name, other in reports.REPORTS.items() if other.plot)
        raise reports.ReportError(f"report {spec.name} has no plot; plots: {plottable}")
    if filters.get("by_owner") and filters.get("owner") is None:
        raise reports.ReportError("--plot draws all owners together or one owner (--owner ID): drop --by-owner")
    path = Path(plot_path)
    if path.suffix.lower() != ".png":
        raise reports.ReportError(f"--plot '{shown(plot_path)}' must name a .png file")
    if path.is_dir():
        raise reports.ReportError(f"--plot '{shown(plot_path)}' is a directory; name a .png file in it")
    if not path.parent.is_dir():
        raise reports.ReportError(f"--plot '{shown(plot_path)}': directory '{shown(str(path.parent))}' does not exist")
    _check_writable(path, plot_path)
    return path


def _check_writable(path: Path, plot_path: str) -> None:
    """ReportError unless a file can be created next to ``path``: found before the report is computed, not after.

    The probe is a temporary file of its own, removed at once: an existing
    plot of that name is not touched until the new one is written.
    """
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".crmtasks-plot-", suffix=".png"):
            pass
    except OSError as error:
        raise reports.ReportError(f"--plot '{shown(plot_path)}': cannot write in '{shown(str(path.parent))}' "
                                  f"({error.strerror or error})") from None


def _print(report: reports.Report | None, output_format: str, data: bytes | None) -> None:
    if data is not None:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    columns = [column for column in report.columns if column != "period_start"]
    title = f"{report.name} (as of {report.as_of:%Y-%m-%d %H:%M:%S %Z})"
    print_table(title, columns, [[_cell(column, row[column]) for column in columns] for row in report.rows])
    if not report.rows:
        stderr.print("no rows match these filters")


def _cell(column: str, value) -> str:
    if value is None:
        return ""
    if column in _RATE_COLUMNS:
        return f"{value * 100:.2f} %"
    if isinstance(value, bool):
        return "active" if value else "deactivated"
    if isinstance(value, decimal.Decimal):
        return f"{value:,}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
