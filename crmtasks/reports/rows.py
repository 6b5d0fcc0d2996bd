"""``Rows``: a report's rows kept as columns, turned into Python values only when read.

Reading a report used to cost what building every row did: a dict and a
``Decimal``, a ``date`` and an ``int`` per cell, 100k objects for a per-owner
report over a few years, most of them never looked at by a caller that
draws a chart, writes a page or counts. The report's statement sends its
rows as one row of columns (``crmtasks.reports.payloads``) and
``crmtasks.pg.lazy_rows.Rows`` decodes a column the first time any cell of
it is read. A report adds one derived column, ``period``: the label of
``period_start`` at the report's grain.
"""

from __future__ import annotations

from crmtasks.pg import lazy_rows
from crmtasks.reports import periods

# How each report column travels (see queries.COLUMN_KINDS): "text" columns come as lists of str or None;
# the others as one string of comma-separated values, an empty value meaning NULL.
KINDS = ("text", "int", "decimal", "date", "bool")


class Rows(lazy_rows.Rows):
    """A report's rows, column-oriented, decoded on first read; a sequence of dicts.

    Parameters:
      names(tuple[str]): Column names in row order (``period`` first for period reports).
      kinds(tuple[str]): For each name, one of ``KINDS``; ``period`` is derived from ``period_start``.
      raw(tuple): For each name, its cells as sent (a comma-joined string or a list), None for ``period``.
      length(int): Number of rows.
      grain(str|None): The grain of the ``period`` labels, for period reports.
    """

    __slots__ = ("_grain",)

    def __init__(self, names, kinds, raw, length: int, grain: str | None = None) -> None:
        super().__init__(names, kinds, raw, length)
        self._grain = grain

    def _decode(self, name: str) -> list:
        if name == "period":
            labels: dict = {}
            grain = self._grain
            return [labels.get(start) or labels.setdefault(start, periods.label(start, grain))
                    for start in self.column("period_start")]
        return super()._decode(name)
