"""A report as the bytes ``crmtasks report --format json|csv`` prints, kept per refresh generation.

The bytes depend only on the rows, ``as_of`` and the filters, so they are
made once per refresh generation and statement and kept next to the
columns in ``report_payloads`` (see ``crmtasks.reports.payloads``): the next
``crmtasks report`` of that generation, on any host, writes them out
without formatting a row. A report without rows is formatted each time.

JSON: the document ``Report.as_dict()`` with Decimals and dates as strings,
one row per line (each row a compact JSON object), so it is made by the C
encoder rather than Python's indenting one.
"""

from __future__ import annotations

import csv
import datetime
import io
import json

from crmtasks.pg import db
from crmtasks.reports import payloads
from crmtasks.reports.queries import Query, Report, digest_of, execute

FORMATS = ("json", "csv")


def as_json(report: Report) -> bytes:
    """``{"report", "as_of", "filters", "rows": [...]}``, one row per line, with a final newline."""
    document = report.as_dict()
    rows = document.pop("rows")
    head = json.dumps(document, default=str)[:-1]
    lines = ",\n".join(json.dumps(row, default=str) for row in rows)
    return f'{head}, "rows": [\n{lines}\n]}}\n'.encode() if rows else f'{head}, "rows": []}}\n'.encode()


def as_csv(report: Report) -> bytes:
    """A header of the columns plus ``as_of``, then one line per row; NULL is an empty field."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(list(report.columns) + ["as_of"])
    as_of = report.as_of.isoformat()
    rows = report.rows
    if hasattr(rows, "column"):
        columns = [list(map(_plain, rows.column(name))) for name in report.columns]
    else:
        columns = [[_plain(row[name]) for row in rows] for name in report.columns]
    writer.writerows(row + (as_of,) for row in zip(*columns))
    return out.getvalue().encode()


def query_bytes(query: Query, output_format: str, connection=None) -> bytes:
    """What ``crmtasks report --format csv|json`` prints for ``query``: one round trip when this generation's bytes
    were kept; else the report is read (ReportError, AggregatesNotReady as for the API), formatted and kept."""
    with db.using_connection(connection) as conn:
        with conn.cursor() as cur:
            _, data = payloads.lookup(cur, digest_of(query, cur), output_format)
        if data is not None:
            return data
        return rendered(execute(query, conn), output_format, conn)


def rendered(report: Report, output_format: str, connection=None) -> bytes:
    """``as_json`` or ``as_csv`` of ``report``: kept bytes of its generation if any, else made (and kept)."""
    render = {"json": as_json, "csv": as_csv}[output_format]
    if report.cache is None:
        return render(report)
    with db.using_connection(connection) as conn:
        with conn.cursor() as cur:
            published, data = payloads.lookup(cur, report.cache, output_format)
        if data is not None and published == report.as_of:
            return data
        data = render(report)
        payloads.store(conn, report.cache, output_format, report.as_of, data)
    return data


def _plain(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return str(value)
