"""Text search (``q``) from memory: the positions of the rows whose text columns contain ``q`` as ILIKE finds them.

Today's live SQL keeps a row when any text column ``ILIKE '%' || like_escape(q) || '%'``
(crmtasks.search.sql.where_clause). On a UTF8 database PostgreSQL evaluates that as:
lower-case pattern and text with the server's ``lower()``, then compare bytes, so a row
matches exactly when ``lower(q)`` is a substring of ``lower(column)`` for some non-NULL
column (the escaped wildcards match themselves). The core index (crmtasks.search.index)
already holds each text column lowered by the server (``TextData``, rows joined by NUL);
``q`` is lowered with the server's own case map (crmtasks.search.text_case).

A segment of a few rows is scanned (``bytes.find``). A large one (the generation's base)
gets a ``TextIndex`` built once per loaded index, per text column:
  - trigram (three consecutive bytes) -> BitMap of the ids of the column's *distinct*
    values holding it (names and companies repeat: cost follows what is distinct);
  - value id -> row positions (``row_starts``/``row_positions``, compressed sparse rows).
A search ANDs the bitmaps of the trigrams of ``lower(q)`` (every trigram of a substring is
in the value), checks each candidate value for the whole substring on one row holding it
(one vectorised pass over the core's text; a three-byte ``q`` needs none), and turns the
matching values into row positions. Exact by construction: a value is kept only when it
holds the bytes of ``lower(q)``.
"""

from __future__ import annotations

import array
import dataclasses

import numpy as np
from pyroaring import BitMap

from crmtasks.search.index import EntityIndex, TextData

# Bytes gathered at once when candidate values are checked (bounds the temporary array).
_CHECK_CHUNK_BYTES = 4 << 20


def uint32_bitmap(positions: np.ndarray) -> BitMap:
    """A BitMap of ``positions`` (any integer array), through pyroaring's fast array.array path."""
    values = array.array("I")
    values.frombytes(np.ascontiguousarray(positions, dtype=np.uint32).tobytes())
    return BitMap(values)


def _compact(offsets: np.ndarray) -> np.ndarray:
    """Ascending offsets as uint32 when they fit (half the memory), else as they are."""
    return offsets.astype(np.uint32) if not len(offsets) or offsets[-1] < 2**32 else offsets


def _trigram_codes(data: np.ndarray) -> np.ndarray:
    """The trigram code (b0 << 16 | b1 << 8 | b2) at every offset of a uint8 array."""
    return (data[:-2].astype(np.uint32) << 16) | (data[1:-1].astype(np.uint32) << 8) | data[2:]


def needle_trigrams(needle: bytes) -> list[int]:
    """The distinct trigram codes of ``needle`` (at least three bytes)."""
    return sorted(set(_trigram_codes(np.frombuffer(needle, dtype=np.uint8)).tolist()))


def scan_positions(text: TextData, needle: bytes) -> np.ndarray:
    """Positions whose lowered value holds ``needle``, by scanning the column (for small segments)."""
    hits = []
    start = text.lowered.find(needle)
    while start >= 0:
        hits.append(start)
        start = text.lowered.find(needle, start + 1)
    if not hits:
        return np.zeros(0, dtype=np.uint32)
    # No hit spans two rows: rows are NUL-separated and the needle holds no NUL.
    return np.unique(np.searchsorted(text.offsets, np.array(hits, dtype=np.int64), side="right") - 1)


def holds(text: TextData, positions: np.ndarray, needle: bytes) -> np.ndarray:
    """Bool per position: its lowered value holds ``needle`` (rows gathered into fixed-width rows, then found)."""
    data = np.frombuffer(text.lowered, dtype=np.uint8)
    starts = text.offsets[positions].astype(np.int64)
    lengths = text.offsets[positions + 1].astype(np.int64) - starts - 1
    found = np.zeros(len(positions), dtype=bool)
    width = int(lengths.max()) if len(positions) else 0
    if width < len(needle):
        return found
    step = max(1, _CHECK_CHUNK_BYTES // width)
    offsets = np.arange(width, dtype=np.int64)
    for first in range(0, len(positions), step):
        chunk = slice(first, first + step)
        # Past its end a row reads its own NUL separator (clamped): values hold no NUL, so padding never matches.
        index = np.minimum(starts[chunk, None] + offsets, starts[chunk, None] + lengths[chunk, None])
        rows = np.ascontiguousarray(data[index]).view(f"S{width}").ravel()
        found[chunk] = np.char.find(rows, needle) >= 0
    return found


@dataclasses.dataclass(frozen=True)
class ColumnTrigrams:
    """One text column's trigram index (see the module docstring).

    Parameters:
      trigrams(dict): trigram code -> BitMap of the value ids holding it.
      row_starts(ndarray): uint32, value id -> first index into ``row_positions`` (one more entry than values).
      row_positions(ndarray): uint32, row positions grouped by value id; a value's first row is its smallest.
    """

    trigrams: dict[int, BitMap]
    row_starts: np.ndarray
    row_positions: np.ndarray

    @classmethod
    def build(cls, text: TextData) -> ColumnTrigrams:
        """The trigram index of one column of the core index."""
        distinct: dict[bytes, int] = {}
        rows = text.lowered.split(b"\x00")[:-1]
        codes = np.fromiter((distinct.setdefault(row, len(distinct)) for row in rows), dtype=np.uint32, count=len(rows))
        order = np.argsort(codes, kind="stable").astype(np.uint32)
        row_starts = np.zeros(len(distinct) + 1, dtype=np.int64)
        np.cumsum(np.bincount(codes, minlength=len(distinct)), out=row_starts[1:])
        return cls(_value_trigrams(list(distinct)), _compact(row_starts), order)

    def positions_holding(self, text: TextData, needle: bytes) -> BitMap:
        """Positions whose value holds ``needle`` (lower-cased UTF-8, three bytes or more)."""
        bitmaps = []
        for code in needle_trigrams(needle):
            bitmap = self.trigrams.get(code)
            if bitmap is None:
                return BitMap()
            bitmaps.append(bitmap)
        candidates = BitMap.intersection(*bitmaps) if len(bitmaps) > 1 else bitmaps[0]
        if not candidates:
            return BitMap()
        ids = np.frombuffer(candidates.to_array(), dtype=np.uint32).astype(np.int64)
        if len(needle) > 3:  # three bytes are one trigram: its bitmap is the answer already
            first_rows = self.row_positions[self.row_starts[ids].astype(np.int64)].astype(np.int64)
            ids = ids[holds(text, first_rows, needle)]
        starts = self.row_starts[ids].astype(np.int64)
        counts = self.row_starts[ids + 1].astype(np.int64) - starts
        total = int(counts.sum())
        if not total:
            return BitMap()
        index = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(total, dtype=np.int64)
        return uint32_bitmap(np.sort(self.row_positions[index]))

    def nbytes(self) -> int:
        """Bytes held: the arrays and the bitmaps' containers."""
        total = self.row_starts.nbytes + self.row_positions.nbytes
        for bitmap in self.trigrams.values():
            stats = bitmap.get_statistics()
            total += (stats["n_bytes_array_containers"] + stats["n_bytes_bitset_containers"]
                      + stats["n_bytes_run_containers"])
        return total


def _value_trigrams(values: list[bytes]) -> dict[int, BitMap]:
    """trigram code -> BitMap of the ids (list indexes) of ``values`` holding it."""
    blob = b"\x00".join(values) + b"\x00"
    data = np.frombuffer(blob, dtype=np.uint8)
    if len(data) < 3:
        return {}
    lengths = np.fromiter((len(value) + 1 for value in values), dtype=np.int64, count=len(values))
    codes = _trigram_codes(data)
    value_ids = np.repeat(np.arange(len(values), dtype=np.uint64), lengths)[:-2]
    inside = (data[:-2] != 0) & (data[1:-1] != 0) & (data[2:] != 0)
    keys = np.sort((codes[inside].astype(np.uint64) << np.uint64(32)) | value_ids[inside])
    if not len(keys):
        return {}
    trigram_of = (keys >> np.uint64(32)).astype(np.uint32)
    bounds = np.concatenate(([0], np.flatnonzero(np.diff(trigram_of)) + 1, [len(keys)]))
    value_of = (keys & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return {int(trigram_of[start]): uint32_bitmap(value_of[start:end])  # repeats within a value collapse here
            for start, end in zip(bounds[:-1].tolist(), bounds[1:].tolist())}


@dataclasses.dataclass(frozen=True)
class TextIndex:
    """The trigram indexes of one loaded ``EntityIndex``'s text columns.

    Parameters:
      columns(dict): text column name -> ColumnTrigrams.
    """

    columns: dict[str, ColumnTrigrams]

    @classmethod
    def build(cls, index: EntityIndex) -> TextIndex:
        return cls({name: ColumnTrigrams.build(text) for name, text in index.texts.items()})

    def positions(self, index: EntityIndex, needle: bytes) -> BitMap:
        """Positions of ``index`` (the one this was built from) holding ``needle`` in any text column."""
        result = BitMap()
        for name, column in self.columns.items():
            result |= column.positions_holding(index.texts[name], needle)
        return result

    def nbytes(self) -> int:
        return sum(column.nbytes() for column in self.columns.values())


def scanned_positions(index: EntityIndex, needle: bytes) -> BitMap:
    """Positions of ``index`` holding ``needle`` in any text column, by scanning (no trigram index)."""
    result = BitMap()
    for text in index.texts.values():
        result |= uint32_bitmap(scan_positions(text, needle))
    return result
