"""``Rows``: a report's rows kept as columns, turned into Python values only when read.

Reading a report used to cost what building every row did: a dict and a
``Decimal``, a ``date`` and an ``int`` per cell, 100k objects for a per-owner
report over a few years, most of them never looked at by a caller that
draws a chart, writes a page or counts. ``Rows`` holds the columns as the
database sent them (one comma-joined string per number, date or flag column,
a list per text column) and decodes a column the first time any cell of it
is read, with one C-level ``map`` per column. It is a ``Sequence`` of dicts:
``len``, indexing, slicing and iteration give exactly the dicts the API
returned before, and it compares equal to a list of those dicts.
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Iterator, Sequence

from crmtasks.reports import periods

# How each report column travels (see queries.COLUMN_KINDS): "text" columns come as lists of str or None;
# the others as one string of comma-separated values, an empty value meaning NULL.
KINDS = ("text", "int", "decimal", "date", "bool")


def _decode_int(value: str):
    return int(value) if value else None


def _decode_decimal(value: str):
    return decimal.Decimal(value) if value else None


def _decode_bool(value: str):
    return None if not value else value == "true"


_DECODERS = {"int": _decode_int, "decimal": _decode_decimal, "bool": _decode_bool}


class Rows(Sequence):
    """A report's rows, column-oriented, decoded on first read; a sequence of dicts.

    Parameters:
      names(tuple[str]): Column names in row order (``period`` first for period reports).
      kinds(tuple[str]): For each name, one of ``KINDS``; ``period`` is derived from ``period_start``.
      raw(tuple): For each name, its cells as sent (a comma-joined string or a list), None for ``period``.
      length(int): Number of rows.
      grain(str|None): The grain of the ``period`` labels, for period reports.
    """

    __slots__ = ("_decoded", "_grain", "_kinds", "_length", "_names", "_raw")

    def __init__(self, names, kinds, raw, length: int, grain: str | None = None) -> None:
        self._names = tuple(names)
        self._kinds = tuple(kinds)
        self._raw = tuple(raw)
        self._length = length
        self._grain = grain
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
        if name == "period":
            labels: dict = {}
            grain = self._grain
            return [labels.get(start) or labels.setdefault(start, periods.label(start, grain))
                    for start in self.column("period_start")]
        index = self._names.index(name)
        kind, raw = self._kinds[index], self._raw[index]
        if self._length == 0:
            return []
        if kind == "text":
            return list(raw)
        cells = raw.split(",")
        if kind == "date":
            days: dict = {}
            return [days.get(cell) or days.setdefault(cell, datetime.date.fromisoformat(cell)) if cell else None
                    for cell in cells]
        return list(map(_DECODERS[kind], cells))

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._length))]
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError("report row index out of range")
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

