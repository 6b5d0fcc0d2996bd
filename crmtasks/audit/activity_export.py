"""Writing a window of activity out as csv or json, streamed from the server (``crmtasks audit activity``).

A week of activity is tens of thousands of rows and a month hundreds of
thousands: building them as Python objects only to print them again is
most of the time and all of the memory. Here PostgreSQL formats the rows
itself (``COPY ... TO STDOUT``, csv with a header, or one ``row_to_json``
object per line) and each chunk goes to the output as it arrives, so memory
stays flat whatever the window. Timestamps are written in UTC.
"""

from __future__ import annotations

from typing import BinaryIO

from psycopg2 import sql

from crmtasks.audit.activity import SORT_MEMORY
from crmtasks.pg import transaction

FORMATS = ("csv", "json")

# JSON text has no raw newline, control character or \x01/\x02 in it, so with these as quote and delimiter the
# csv format sends each object exactly as row_to_json made it: no quoting, no escaping (the text format would
# double every backslash).
_JSON_LINES = sql.SQL("COPY (SELECT row_to_json(r) FROM ({}) r) TO STDOUT "
                      "WITH (FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x01')")
_CSV = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER)")


class _JsonArray:
    """A file-like writer turning one JSON object per line into one JSON array, as chunks arrive."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._rows = 0
        self._line_open = False

    def write(self, data: bytes) -> None:
        parts = data.split(b"\n")
        for index, part in enumerate(parts):
            complete = index < len(parts) - 1  # a newline followed it
            if not part and not complete:
                continue
            if not self._line_open:
                self._out.write(b"[\n" if self._rows == 0 else b",\n")
                self._rows += 1
            self._out.write(part)
            self._line_open = not complete

    def close(self) -> None:
        self._out.write(b"\n]\n" if self._rows else b"[]\n")


def export_activity(conn, statement: sql.Composable, out: BinaryIO, output_format: str) -> None:
    """Write the rows of ``statement`` (an ``activity_statement``) to ``out`` as csv or json.

    Parameters:
      conn: A psycopg2 connection with no transaction open (the export is one read-only transaction).
      out: A binary file (``sys.stdout.buffer``).
      output_format(str): ``csv`` (with a header line) or ``json`` (an array of objects).
    """
    if output_format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)} (got {output_format!r})")
    with transaction(conn, read_only=True, local={"timezone": "UTC", "work_mem": SORT_MEMORY}) as cur:
        if output_format == "csv":
            cur.copy_expert(_CSV.format(statement), out)
            return
        writer = _JsonArray(out)
        cur.copy_expert(_JSON_LINES.format(statement), writer)
        writer.close()
