"""``Rows``: rows kept as the database sent them, turned into Python values only when read.

Fetching rows the usual way (``cursor.fetchall``) builds a tuple per row
and a Python object per cell: a ``datetime`` per timestamp, a ``dict`` per
jsonb value (``json.loads`` once per row), an ``int`` per number. For a few
thousand rows that is most of the time of the call, far more than the
database's own work, and much of it is wasted on callers that count, page,
filter on one column or write the rows out again.

``Rows`` holds the columns undecoded and decodes a column the first time any
cell of it is read, with one C-level ``map`` per column where it can. It
is a ``Sequence`` of dicts: ``len``, indexing, slicing and iteration give the
same dicts that building them eagerly would, and it compares equal to a
list of those dicts. Two ways to fill it, both one round trip:

* columns aggregated by the database into one row (``string_agg`` of the
  numbers, dates and flags, ``array_agg`` of the text): the reports
  (``crmtasks.reports.payloads``);
* ``copy_rows``: the rows of any SELECT as ``COPY ... TO STDOUT`` text, kept
  as one string and split into columns on the first read (the audit log's
  activity, ``crmtasks.audit.activity``). COPY costs the server less than
  aggregating, and the client nothing per row until a cell is read.
"""

from __future__ import annotations

import datetime
import decimal
import io
import json
import re
from collections.abc import Iterator, Sequence

import psycopg2.extensions
from psycopg2 import sql

# How a column travels and is decoded. Aggregated columns: "text" as a list of str or None, the others as one
# comma-joined string, an empty value meaning NULL. Copied columns: every cell a str, or None for NULL.
# "timestamptz" cells are PostgreSQL's text of a timestamptz in the ISO DateStyle (the one psycopg2 itself relies
# on): ISO 8601 with the session TimeZone's offset.
KINDS = ("text", "int", "decimal", "date", "bool", "timestamptz", "json")

def _decode_int(value: str):
    return int(value) if value else None


def _decode_decimal(value: str):
    return decimal.Decimal(value) if value else None


def _decode_bool(value: str):
    return None if not value else value == "true"


def _decode_time_column(cells: list) -> list:
    """ISO 8601 text with its offset -> aware datetimes, by the C parser alone when there is no NULL."""
    parse = datetime.datetime.fromisoformat
    if None in cells or "" in cells:
        return [parse(cell) if cell else None for cell in cells]
    return list(map(parse, cells))


def _decode_json_column(cells: list) -> list:
    """One ``json.loads`` for the whole column (a JSON array of its cells): a fraction of one call per cell."""
    if None in cells:
        cells = ["null" if cell is None else cell for cell in cells]
    return json.loads("[" + ",".join(cells) + "]")


def _decode_int_column(cells: list) -> list:
    if None in cells or "" in cells:
        return [int(cell) if cell else None for cell in cells]
    return list(map(int, cells))


_DECODERS = {"decimal": _decode_decimal, "bool": _decode_bool}
_COLUMN_DECODERS = {"int": _decode_int_column, "json": _decode_json_column, "timestamptz": _decode_time_column}


def decode_cells(kind: str, cells: list) -> list:
    """``cells`` (str, or None for NULL) as Python values of ``kind``; a new list."""
    if kind == "text":
        return list(cells)
    if kind == "date":
        days: dict = {}
        return [days.get(cell) or days.setdefault(cell, datetime.date.fromisoformat(cell)) if cell else None
                for cell in cells]
    decode_column = _COLUMN_DECODERS.get(kind)
    if decode_column is not None:
        return decode_column(cells)
    return list(map(_DECODERS[kind], cells))


class Rows(Sequence):
    """Rows, column-oriented, decoded on first read; a sequence of dicts.

    Parameters:
      names(tuple[str]): Column names in row order.
      kinds(tuple[str]): For each name, one of ``KINDS`` (a subclass may add derived ones).
      raw(tuple): For each name, its cells as sent: a comma-joined string, or a list of cells (str or None).
      length(int): Number of rows.
    """

    __slots__ = ("_decoded", "_kinds", "_length", "_names", "_raw")

    def __init__(self, names, kinds, raw, length: int) -> None:
        self._names = tuple(names)
        self._kinds = tuple(kinds)
        self._raw = tuple(raw) if raw is not None else None
        self._length = length
        self._decoded: dict[str, list] = {}

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def column(self, name: str) -> list:
        """Every value of column ``name``, decoded (cached: the same list on every call; do not modify it)."""
        values = self._decoded.get(name)
        if values is None:
            values = self._decoded[name] = self._decode(name)
        return values

    def _decode(self, name: str) -> list:
        index = self._names.index(name)
        if self._length == 0:
            return []
        raw = self._raw_cells(index)
        cells = raw.split(",") if isinstance(raw, str) else raw
        return decode_cells(self._kinds[index], cells)

    def _raw_cells(self, index: int):
        return self._raw[index]

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._length))]
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError("row index out of range")
        return {name: self.column(name)[index] for name in self._names}

    def __iter__(self) -> Iterator[dict]:
        names = self._names
        for values in zip(*(self.column(name) for name in names)):
            yield dict(zip(names, values))

    def __eq__(self, other) -> bool:
        if isinstance(other, (Rows, list, tuple)):
            return len(self) == len(other) and all(mine == theirs for mine, theirs in zip(self, other))
        return NotImplemented

    __hash__ = None  # like the list it stands for

    def __repr__(self) -> str:
        return f"Rows({self._length} rows: {', '.join(self._names)})"

    def as_list(self) -> list[dict]:
        """Every row as a dict, in a new list."""
        return list(self)

    def tuples(self) -> list[tuple]:
        """Every row as a tuple of its values in column order (as ``cursor.fetchall`` gives them), in a new list."""
        return list(zip(*(self.column(name) for name in self._names))) if self._length else []


# COPY's text format escapes backslash and these control characters (and sends NULL as \N); nothing else.
_COPY_ESCAPE = re.compile(r"\\(.)")
_COPY_UNESCAPED = {"\\": "\\", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_COPY_NULL = "\\N"


def _unescape(cell: str) -> str:
    return _COPY_ESCAPE.sub(lambda found: _COPY_UNESCAPED.get(found.group(1), found.group(1)), cell)


def _copied_cells(kind: str, cells: list, escaped: bool) -> list:
    """One column of COPY text as cells: None for NULL, escapes undone (only text and json can have any).

    ``escaped``: whether the text has any escape at all (mostly not: then no cell is looked at one by one).
    """
    if _COPY_NULL in cells:  # a C-level scan; most columns are NOT NULL
        cells = [None if cell == _COPY_NULL else cell for cell in cells]
    if escaped and kind in ("text", "json"):
        cells = [_unescape(cell) if cell is not None and "\\" in cell else cell for cell in cells]
    return cells


class CopiedRows(Rows):
    """Rows read with ``COPY (SELECT ...) TO STDOUT`` (text format): one string until a cell is read.

    The first read splits the whole text into fields at once (one replace and
    one split, in C) and takes each column as a slice; a column is then
    decoded as in ``Rows`` on its first read.
    COPY's text format leaves no tab or newline inside a value (they are sent
    escaped), so splitting on them is exact; escapes are undone per cell,
    only in cells that have one.
    """

    __slots__ = ("_escaped", "_text")

    def __init__(self, names, kinds, text: str, length: int) -> None:
        super().__init__(names, kinds, None, length)
        self._text = text
        self._escaped = True

    def _raw_cells(self, index: int):
        if self._raw is None:
            # Every field of every row in one list (a row's last field ends with a newline, the others with a
            # tab), then each column a slice of it: C-level work only.
            fields = self._text.replace("\n", "\t").split("\t")
            fields.pop()  # after the final newline
            width = len(self._names)
            if len(fields) != width * self._length:
                raise RuntimeError(f"COPY sent {len(fields)} fields for {self._length} rows of {width} columns")
            self._raw = tuple(fields[column::width] for column in range(width))
            # Every backslash starts an escape; when each one is a NULL marker (\N), nothing is escaped. (A
            # value's own "\N" is sent as \\N: two backslashes for one marker.)
            self._escaped = self._text.count("\\") != self._text.count(_COPY_NULL)
            self._text = None
        return _copied_cells(self._kinds[index], self._raw[index], self._escaped)


def copy_rows(cursor, statement: sql.Composable, names, kinds, *, local: dict[str, str] | None = None) -> CopiedRows:
    """Run ``statement`` (a SELECT of ``names``, in order) through COPY on ``cursor``; its rows, undecoded.

    Runs in whatever transaction the cursor's connection is in, like ``execute``. ``local``: settings for this
    read only (``SET LOCAL``, e.g. ``work_mem``), sent in the same round trip as the COPY: a query of several
    statements is one implicit transaction, so they end with it. Only on an autocommit connection with no
    transaction open (in any other, they would last to the end of the caller's transaction).
    """
    conn = cursor.connection
    prefix = []
    if local:
        if not conn.autocommit or conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            raise RuntimeError("copy_rows(local=...) needs an autocommit connection with no transaction open")
        prefix = [sql.SQL("SET LOCAL {} = {}; ").format(sql.Identifier(name), sql.Literal(str(value)))
                  for name, value in local.items()]
    buffer = io.BytesIO()
    cursor.copy_expert(sql.SQL("").join([*prefix, sql.SQL("COPY ({}) TO STDOUT").format(statement)]), buffer)
    length = cursor.rowcount
    encoding = psycopg2.extensions.encodings[conn.encoding]
    return CopiedRows(names, kinds, buffer.getvalue().decode(encoding), length)
