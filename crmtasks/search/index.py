"""The in-memory search index of one entity: its rows as columns of numpy arrays, plus one bitmap per facet value.

Interface (read by ``crmtasks.search.text_index`` and ``crmtasks.search.visibility_index``,
which turn a text ``q`` or a user's visibility into positions):

  - A *position* is an index into ``EntityIndex.ids`` (ascending record ids,
    int64, or uint32 in a loaded index when they fit: ``compact_ids``): row
    ``p`` of every array below is the record ``ids[p]``. A set of positions
    is a ``pyroaring.BitMap``.
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
    columns): integer values (``values``; a loaded index stores them
    narrowed, ``NumberColumn.compact``), and ``present`` (bool per row,
    None when the column is NOT NULL). Units: timestamptz in microseconds
    since 1970-01-01 UTC, date in days since 1970-01-01, amount in cents;
    +/-infinity are the int64 extremes. ``range_mask`` compares a checked
    range filter with them exactly.
  - ``texts[column]`` for each column ``q`` searches: PostgreSQL's
    ``lower()`` of the value (so ``ILIKE`` is a substring search of it, as
    PostgreSQL defines ILIKE for a UTF-8 database), UTF-8; NULL is stored
    as the empty string (it never matches a ``q`` of 3+ characters). A
    ``TextData`` (rows joined by NUL: PostgreSQL text never holds NUL, so no
    match crosses rows) as read, in a delta and in the rows read live; a
    ``CodedText`` (crmtasks.search.coded_text: distinct parts and codes per
    row) in a base. Both give ``value(p)`` and ``values_at(positions)``.

An index is immutable once built. Search combines up to three of them (the
published base, the published delta of rows changed since the base, and
rows changed since the generation read live), see ``crmtasks.search.segments``.
"""

from __future__ import annotations

import array
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


def uint32_bitmap(positions: np.ndarray) -> BitMap:
    """A BitMap of ``positions`` (any integer array), through pyroaring's fast ``array.array`` path.

    Why: ``BitMap(ndarray)`` iterates the array element by element, a Python object each (about
    0.1 s per million positions); from an ``array.array`` pyroaring adds them in bulk, 10-15 times faster.
    """
    values = array.array("I")
    values.frombytes(np.ascontiguousarray(positions, dtype=np.uint32).tobytes())
    return BitMap(values)


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
        bitmaps = tuple(uint32_bitmap(order[bounds[i]:bounds[i + 1]]) for i in range(len(keys)))
        return cls(codes, tuple(keys), bitmaps, np.diff(bounds).astype(np.int64))

    def code_of(self) -> dict[str | None, int]:
        return {key: code for code, key in enumerate(self.keys)}


@dataclasses.dataclass(frozen=True)
class NumberColumn:
    """An integer-valued column (see the module docstring for units), stored compactly.

    A row's value is ``base + scale * stored[p]``. Built with ``NumberColumn(values, present)`` it is the
    values as given (base 0, scale 1); ``compact`` stores them in the narrowest unsigned dtype after
    taking off the smallest value and dividing by the values' common divisor: timestamps of whole
    seconds over a few years take 4 bytes instead of 8, a probability 1, an account id 2 or 4.

    Parameters:
      stored(ndarray): Integer per position (0 where not present).
      present(ndarray|None): bool per position, False for NULL; None when the column is never NULL.
      base(int): Added to every stored value.
      scale(int): Multiplies every stored value (>= 1).
    """

    stored: np.ndarray
    present: np.ndarray | None
    base: int = 0
    scale: int = 1

    @classmethod
    def compact(cls, values: np.ndarray, present: np.ndarray | None) -> NumberColumn:
        """The column of int64 ``values`` in the fewest bytes that hold them exactly."""
        values = np.asarray(values, dtype=np.int64)
        real = values if present is None else values[present]
        if not len(real):
            return cls(np.zeros(len(values), dtype=np.uint8), present)
        low, high = int(real.min()), int(real.max())
        if high - low > INT64_MAX:
            return cls(values, present)  # -infinity and +infinity both held: no narrower type spans them
        if low >= 0 and high < 2**32:  # plain values fit: stored as they are, so ``values`` costs no copy
            base, scale = 0, 1
        else:
            base = low
            scale = int(np.gcd.reduce(real - low)) or 1
        shifted = (values - base) // scale
        if present is not None:
            shifted[~present] = 0
        span = (high - base) // scale
        if span >= 2**32:
            return cls(values, present)
        dtype = np.uint8 if span < 2**8 else np.uint16 if span < 2**16 else np.uint32
        return cls(shifted.astype(dtype), present, base, scale)

    @property
    def values(self) -> np.ndarray:
        """The values per position (any value where not present): ``stored`` itself when neither shifted nor
        scaled (no copy), else computed as int64."""
        if self.base == 0 and self.scale == 1:
            return self.stored
        return self.stored.astype(np.int64) * self.scale + self.base

    def nbytes(self) -> int:
        return self.stored.nbytes + (self.present.nbytes if self.present is not None else 0)


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

    def values_at(self, positions) -> list[bytes]:
        """The lowered values (bytes) of ``positions``."""
        offsets = self.offsets.astype(np.int64)
        return [self.lowered[offsets[p]:offsets[p + 1] - 1] for p in positions]

    def nbytes(self) -> int:
        return len(self.lowered) + self.offsets.nbytes


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
        if self.ids.dtype != np.int64:  # compact ids: compare in their dtype (no int64 copy of the column)
            limits = np.iinfo(self.ids.dtype)
            ids = ids[(ids >= limits.min) & (ids <= limits.max)].astype(self.ids.dtype)
            if not len(ids):
                return BitMap()
        found = np.searchsorted(self.ids, ids)
        found = np.minimum(found, len(self.ids) - 1)
        return BitMap(found[self.ids[found] == ids].astype(np.uint32))

    def nbytes(self) -> int:
        """Bytes of the arrays, bitmaps and text held (what a searching process keeps)."""
        return sum(self.nbytes_by_part().values())

    def nbytes_by_part(self) -> dict[str, int]:
        """Bytes held per kind of part: ids, facet codes, facet bitmaps, numbers, texts."""
        return {
            "ids": self.ids.nbytes,
            "facet codes": sum(column.codes.nbytes for column in self.facets.values()),
            "facet bitmaps": sum(bitmap_bytes(bitmap) for column in self.facets.values() for bitmap in column.bitmaps),
            "numbers": sum(number.nbytes() for number in self.numbers.values()),
            "texts": sum(text.nbytes() for text in self.texts.values()),
        }


def bitmap_bytes(bitmap: BitMap) -> int:
    """Bytes of a bitmap's containers."""
    stats = bitmap.get_statistics()
    return stats["n_bytes_array_containers"] + stats["n_bytes_bitset_containers"] + stats["n_bytes_run_containers"]


def narrow_unsigned(codes: np.ndarray, count: int) -> np.ndarray:
    """``codes`` (each below ``count``) in the smallest unsigned dtype that holds them."""
    dtype = np.uint8 if count <= 2**8 else np.uint16 if count <= 2**16 else np.uint32
    return codes.astype(dtype, copy=False)


def compact_ids(ids: np.ndarray) -> np.ndarray:
    """Ascending record ids as uint32 when they fit (half the memory of int64), else as they are."""
    if len(ids) and ids[0] >= 0 and ids[-1] < 2**32:
        return ids.astype(np.uint32)
    return ids


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
    """Bool per position (of ``positions``, or of every row): the value satisfies every bound (NULL never does).

    Compared on the stored values: a bound on ``base + scale * stored`` is an exact bound on ``stored``.
    """
    stored = column.stored if positions is None else column.stored[positions]
    mask = np.ones(len(stored), dtype=bool)
    if column.present is not None:
        mask &= column.present if positions is None else column.present[positions]
    for operator, value in bounds:
        if isinstance(kind, Amount):
            operator, limit = _amount_bound(operator, value)
        else:
            limit = range_units(kind, value)
        mask &= _compare(stored, operator, _stored_limit(column, operator, limit))
    return mask


def _stored_limit(column: NumberColumn, operator: str, limit: int) -> int:
    """The bound on ``stored`` equivalent to ``operator limit`` on ``base + scale * stored`` (exact integers)."""
    shifted = limit - column.base
    if operator in ("gte", "lt"):
        return -(-shifted // column.scale)  # v >= L  <=>  s >= ceil((L - base) / scale); likewise <
    return shifted // column.scale  # v > L  <=>  s > floor((L - base) / scale); likewise <=


def _compare(stored: np.ndarray, operator: str, limit: int) -> np.ndarray:
    """``stored <operator> limit``, for a limit outside the dtype's range too."""
    info = np.iinfo(stored.dtype)
    if limit < info.min or limit > info.max:
        above = limit > info.max  # every stored value is below the limit
        return np.full(len(stored), above == (operator in ("lte", "lt")), dtype=bool)
    if operator == "gte":
        return stored >= limit
    if operator == "gt":
        return stored > limit
    if operator == "lte":
        return stored <= limit
    return stored < limit
