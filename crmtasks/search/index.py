"""The in-memory search index of one entity: its rows as columns of numpy arrays, plus one bitmap per facet value.

Interface (read by ``crmtasks.search.text_index`` and ``crmtasks.search.visibility_index``,
which turn a text ``q`` or a user's visibility into positions):

  - A *position* is an index into ``EntityIndex.ids`` (ascending record ids,
    int64): row ``p`` of every array below is the record ``ids[p]``. A set
    of positions is a ``pyroaring.BitMap``.
  - ``facets[name]`` (a ``CodedColumn``) for every facet of the registry
    (``crmtasks.search.facets``): ``codes[p]`` indexes ``keys``, the facet's
    *bucket keys* as text exactly as ``FacetKind.check`` makes them (a
    status ``'New'``, an owner ``'42'``, a quarter ``'20243'``, an amount
    band ``'2'``), None for "no value"; ``bitmaps[code]`` holds the
    positions with that code. Text facet columns (status, stage,
    lead_source, ...) and ``owner_id`` are stored only here: their values
    are the keys (``int(key)`` for the owner).
  - ``numbers[column]`` (a ``NumberColumn``) for the other non-text
    columns of the entity (``account_id``, ``probability``, the range
    columns): int64 values, and ``present`` (bool per row, None when the
    column is NOT NULL). Units: timestamptz in microseconds since
    1970-01-01 UTC, date in days since 1970-01-01, amount in cents;
    +/-infinity are the int64 extremes. ``range_positions`` compares a
    checked range filter with them exactly.
  - ``texts[column]`` (a ``TextData``) for each column ``q`` searches:
    PostgreSQL's ``lower()`` of the value (so ``ILIKE`` is a substring
    search of it, as PostgreSQL defines ILIKE for a UTF-8 database),
    UTF-8, rows joined by NUL (PostgreSQL text never holds NUL, so no
    match crosses rows); NULL is stored as the empty string (it never
    matches a ``q`` of 3+ characters).

An index is immutable once built. Search combines up to three of them (the
published base, the published delta of rows changed since the base, and
rows changed since the generation read live), see ``crmtasks.search.segments``.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
from typing import Any

import numpy as np
from pyroaring import BitMap

from crmtasks.search.kinds import Amount, Date, RangeKind, Timestamp

INT64_MIN = int(np.iinfo(np.int64).min)
INT64_MAX = int(np.iinfo(np.int64).max)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_EPOCH_DAY = datetime.date(1970, 1, 1)


@dataclasses.dataclass(frozen=True)
class CodedColumn:
    """A facet's bucket key per row, dictionary-coded.

    Parameters:
      codes(ndarray): uint32 per position, an index into ``keys``.
      keys(tuple): Bucket key text per code (None: no value); distinct.
      bitmaps(tuple): BitMap of positions per code.
      totals(ndarray): int64 rows per code (the counts of a search with no filter).
    """

    codes: np.ndarray
    keys: tuple[str | None, ...]
    bitmaps: tuple[BitMap, ...]
    totals: np.ndarray

    @classmethod
    def from_codes(cls, codes: np.ndarray, keys: tuple[str | None, ...]) -> CodedColumn:
        """The column with its bitmaps built (one stable sort of the codes)."""
        codes = np.ascontiguousarray(codes)
        order = np.argsort(codes, kind="stable").astype(np.uint32)
        bounds = np.searchsorted(codes[order], np.arange(len(keys) + 1, dtype=np.uint32))
        bitmaps = tuple(BitMap(order[bounds[i]:bounds[i + 1]]) for i in range(len(keys)))
        return cls(codes, tuple(keys), bitmaps, np.diff(bounds).astype(np.int64))

    def code_of(self) -> dict[str | None, int]:
        return {key: code for code, key in enumerate(self.keys)}


@dataclasses.dataclass(frozen=True)
class NumberColumn:
    """An integer-valued column (see the module docstring for units).

    Parameters:
      values(ndarray): int64 per position (0 where not present).
      present(ndarray|None): bool per position, False for NULL; None when the column is never NULL.
    """

    values: np.ndarray
    present: np.ndarray | None


@dataclasses.dataclass(frozen=True)
class TextData:
    """A text column lowered by PostgreSQL, for substring search.

    Parameters:
      lowered(bytes): UTF-8 ``lower(value)`` of each row, rows separated by one NUL byte.
      offsets(ndarray): ``len(ids) + 1`` entries (uint32 while the text is under 4 GiB, else int64):
        row ``p`` is ``lowered[offsets[p]:offsets[p + 1] - 1]``.
    """

    lowered: bytes
    offsets: np.ndarray

    def value(self, position: int) -> str:
        return self.lowered[int(self.offsets[position]):int(self.offsets[position + 1]) - 1].decode()


@dataclasses.dataclass(frozen=True)
class EntityIndex:
    """One entity's rows as of one snapshot (see the module docstring).

    Parameters:
      entity(str): The registry name (``leads``).
      ids(ndarray): Ascending record ids, int64; positions index it.
      facets(dict): Facet name -> CodedColumn.
      numbers(dict): Column -> NumberColumn.
      texts(dict): Column -> TextData.
    """

    entity: str
    ids: np.ndarray
    facets: dict[str, CodedColumn]
    numbers: dict[str, NumberColumn]
    texts: dict[str, TextData]

    def __len__(self) -> int:
        return len(self.ids)

    def positions_of_ids(self, ids: np.ndarray) -> BitMap:
        """Positions of those of ``ids`` this index holds (the others are ignored)."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids) or not len(self.ids):
            return BitMap()
        found = np.searchsorted(self.ids, ids)
        found = np.minimum(found, len(self.ids) - 1)
        return BitMap(found[self.ids[found] == ids].astype(np.uint32))

    def nbytes(self) -> int:
        """Bytes of the arrays, bitmaps and text held (what a searching process keeps)."""
        total = self.ids.nbytes
        for column in self.facets.values():
            total += column.codes.nbytes + sum(bitmap.get_statistics()["n_bytes_array_containers"]
                                               + bitmap.get_statistics()["n_bytes_bitset_containers"]
                                               + bitmap.get_statistics()["n_bytes_run_containers"]
                                               for bitmap in column.bitmaps)
        for number in self.numbers.values():
            total += number.values.nbytes + (number.present.nbytes if number.present is not None else 0)
        for text in self.texts.values():
            total += len(text.lowered) + text.offsets.nbytes
        return total


def range_units(kind: RangeKind, value: Any) -> int:
    """A checked range bound in the units its ``NumberColumn`` stores (exact; amounts see ``range_positions``)."""
    if isinstance(kind, Timestamp):
        return (value - _EPOCH) // datetime.timedelta(microseconds=1)
    if isinstance(kind, Date):
        return (value - _EPOCH_DAY).days
    raise TypeError(f"no units for {type(kind).__name__}")


def _amount_bound(operator: str, value: decimal.Decimal) -> tuple[str, int]:
    """An amount bound as an exact bound on whole cents (the column is numeric(14, 2))."""
    cents = value * 100
    floor = int(cents.to_integral_value(rounding=decimal.ROUND_FLOOR))
    ceiling = int(cents.to_integral_value(rounding=decimal.ROUND_CEILING))
    # cents >= x  <=>  cents >= ceil(x);  cents > x  <=>  cents > floor(x); and so on.
    return operator, {"gte": ceiling, "gt": floor, "lte": floor, "lt": ceiling}[operator]


def range_mask(column: NumberColumn, kind: RangeKind, bounds: tuple[tuple[str, Any], ...],
               positions: np.ndarray | None = None) -> np.ndarray:
    """Bool per position (of ``positions``, or of every row): the value satisfies every bound (NULL never does)."""
    values = column.values if positions is None else column.values[positions]
    mask = np.ones(len(values), dtype=bool)
    if column.present is not None:
        mask &= column.present if positions is None else column.present[positions]
    for operator, value in bounds:
        if isinstance(kind, Amount):
            operator, limit = _amount_bound(operator, value)
        else:
            limit = range_units(kind, value)
        limit = max(INT64_MIN, min(INT64_MAX, limit))
        if operator == "gte":
            mask &= values >= limit
        elif operator == "gt":
            mask &= values > limit
        elif operator == "lte":
            mask &= values <= limit
        else:
            mask &= values < limit
    return mask
