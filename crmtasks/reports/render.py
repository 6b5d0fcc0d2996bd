"""A report as the bytes ``crmtasks report --format json|csv`` prints, shared in Redis per generation.

The bytes depend only on the rows, ``as_of`` and the filters, so they are
made once per refresh generation and statement (``Report.cache``, see
``crmtasks.reports.payloads``) and kept in Redis next to the columns: the
next ``crmtasks report`` on any host writes them out without formatting a
row. A report without a cache key (none was made: no rows) is formatted
each time.
"""

from __future__ import annotations

import csv
import datetime
import io
import json

from crmtasks.reports import payloads
from crmtasks.reports.queries import Report

FORMATS = ("json", "csv")


def as_json(report: Report) -> bytes:
    """The report as an indented JSON document (Decimals and dates as strings), with a final newline."""
    return (json.dumps(report.as_dict(), indent=2, default=str) + "\n").encode()


def as_csv(report: Report) -> bytes:
    """A header of the columns plus ``as_of``, then one line per row; NULL is an empty field."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(list(report.columns) + ["as_of"])
    as_of = report.as_of.isoformat()
    rows = report.rows
    columns = [[_plain(value) for value in rows.column(name)] for name in report.columns] if hasattr(
        rows, "column") else [[_plain(row[name]) for row in rows] for name in report.columns]
    writer.writerows(row + (as_of,) for row in zip(*columns))
    return out.getvalue().encode()


def rendered(report: Report, output_format: str) -> bytes:
    """``as_json`` or ``as_csv`` of ``report``, from Redis when this generation's bytes were made already."""
    render = {"json": as_json, "csv": as_csv}[output_format]
    if report.cache is None:
        return render(report)
    cache = f"{report.cache}:{output_format}"
    data = payloads.cached(cache)
    if data is None:
        data = render(report)
        payloads.store(cache, data)
    return data


def _plain(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return str(value)
