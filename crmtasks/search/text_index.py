"""Text search (``q``) from memory: the positions of the rows whose text columns contain ``q`` as ILIKE finds them.

Today's live SQL keeps a row when any text column ``ILIKE '%' || like_escape(q) || '%'``
(crmtasks.search.sql.where_clause). On a UTF8 database PostgreSQL evaluates that as:
lower-case pattern and text with the server's ``lower()``, then compare bytes, so a row
matches exactly when ``lower(q)`` is a substring of ``lower(column)`` for some non-NULL
column (the escaped wildcards match themselves). The core index (crmtasks.search.index)
already holds each text column lowered by the server (``TextData``, rows joined by NUL);
``q`` is lowered with the server's own case map (crmtasks.search.text_case).

A segment of a few rows held raw (``TextData``: a delta, the rows read live) is scanned
(``bytes.find``). A generation's base holds its text columns dictionary-coded
(``CodedText``, crmtasks.search.coded_text: distinct parts before and after the first
``@`` or space, codes per row) and gets a ``TextIndex`` built once per loaded index, per column:
  - trigram (three consecutive bytes) -> BitMap of the ids of the column's *distinct*
    parts holding it (names and companies repeat: cost follows what is distinct);
  - part id -> row positions (``row_starts``/``row_positions``, compressed sparse rows).
The distinct parts are the coded column's own, not copied. A search ANDs the bitmaps of
the trigrams of ``lower(q)`` (every trigram of a substring is in the value), checks each
candidate part for the whole substring (one vectorised pass; a three-byte ``q`` needs
none), and turns the matching parts into row positions. Exact by construction: a part is
kept only when it holds the bytes of ``lower(q)``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from pyroaring import BitMap

from crmtasks.search.coded_text import CodedText, ValueList, code_text
from crmtasks.search.index import EntityIndex, TextData, bitmap_bytes, uint32_bitmap

# Bytes gathered at once when candidate values are checked (bounds the temporary array).
_CHECK_CHUNK_BYTES = 4 << 20


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


def _check(text: bytes, starts: np.ndarray, lengths: np.ndarray, needle: bytes, how: str) -> np.ndarray:
    """Bool per (start, length) slice of ``text``: it ``contains``, ``startswith`` or ``endswith`` ``needle``.

    Vectorised: the slices are gathered into fixed-width rows (in chunks of bounded size), then found.
    """
    data = np.frombuffer(text, dtype=np.uint8)
    found = np.zeros(len(starts), dtype=bool)
    width = int(lengths.max()) if len(starts) else 0
    if width < len(needle) or not len(starts):
        return found
    step = max(1, _CHECK_CHUNK_BYTES // width)
    offsets = np.arange(width, dtype=np.int64)
    for first in range(0, len(starts), step):
        chunk = slice(first, first + step)
        # Past its end a slice reads the NUL after it (clamped): text holds no NUL, so padding never matches.
        index = np.minimum(starts[chunk, None] + offsets, starts[chunk, None] + lengths[chunk, None])
        rows = np.ascontiguousarray(data[index]).view(f"S{width}").ravel()
        if how == "contains":
            found[chunk] = np.char.find(rows, needle) >= 0
        else:
            found[chunk] = getattr(np.char, how)(rows, needle)
    return found


@dataclasses.dataclass(frozen=True)
class ValueDictionary:
    """One part of a text column, dictionary-coded: the distinct values, their trigrams and their rows.

    Parameters:
      values(ValueList): Distinct values (lower-cased UTF-8); shared with the ``CodedText`` it was built
        from, not copied.
      trigrams(dict): trigram code -> BitMap of the value ids holding it.
      row_starts(ndarray): uint32, value id -> first index into ``row_positions`` (one more entry than values).
      row_positions(ndarray): uint32, row positions grouped by value id (rows whose part is empty, or that
        have no part, code 0, are left out: they match no needle).
    """

    values: ValueList
    trigrams: dict[int, BitMap]
    row_starts: np.ndarray
    row_positions: np.ndarray

    @classmethod
    def build(cls, values: ValueList, codes: np.ndarray) -> ValueDictionary:
        """The dictionary of ``values``, row ``p`` holding value ``codes[p]``."""
        empty = np.diff(values.starts.astype(np.int64)) == 1
        empty[0] = True
        kept = np.flatnonzero(~empty[codes])
        kept_codes = codes[kept]
        order = kept[np.argsort(kept_codes, kind="stable")].astype(np.uint32)
        row_starts = np.zeros(len(values) + 1, dtype=np.int64)
        np.cumsum(np.bincount(kept_codes, minlength=len(values)), out=row_starts[1:])
        return cls(values, _value_trigrams(values), _compact(row_starts), order)

    def value_ids(self, needle: bytes, how: str) -> np.ndarray:
        """Ids of the values that ``contains``/``startswith``/``endswith`` ``needle`` (a non-empty one)."""
        if len(needle) >= 3:
            bitmaps = []
            for code in needle_trigrams(needle):
                bitmap = self.trigrams.get(code)
                if bitmap is None:
                    return np.zeros(0, dtype=np.int64)
                bitmaps.append(bitmap)
            candidates = BitMap.intersection(*bitmaps) if len(bitmaps) > 1 else bitmaps[0]
            ids = np.frombuffer(candidates.to_array(), dtype=np.uint32).astype(np.int64)
            if len(needle) == 3 and how == "contains":
                return ids  # three bytes are one trigram: its bitmap is the answer already
        else:  # too short for a trigram: every value is a candidate (the dictionary, not the rows)
            ids = np.arange(1, len(self.values), dtype=np.int64)
        starts = self.values.starts[ids].astype(np.int64)
        lengths = self.values.starts[ids + 1].astype(np.int64) - starts - 1
        return ids[_check(self.values.blob, starts, lengths, needle, how)]

    def rows_of(self, ids: np.ndarray) -> BitMap:
        """Positions of the rows whose part is one of the values ``ids``."""
        starts = self.row_starts[ids].astype(np.int64)
        counts = self.row_starts[ids + 1].astype(np.int64) - starts
        total = int(counts.sum())
        if not total:
            return BitMap()
        index = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(total, dtype=np.int64)
        return uint32_bitmap(np.sort(self.row_positions[index]))

    def nbytes(self) -> int:
        """Bytes held besides the shared values: the arrays and the bitmaps' containers."""
        total = self.row_starts.nbytes + self.row_positions.nbytes
        return total + sum(bitmap_bytes(bitmap) for bitmap in self.trigrams.values())


@dataclasses.dataclass(frozen=True)
class ColumnTrigrams:
    """One text column's index: each value split at its first separator (``@`` in an e-mail column,
    else a space) into two dictionaries.

    Why the split: an e-mail address is nearly unique, but its local part and its domain repeat
    (the same people, the same companies), and so do a name's or a company's first word and the
    rest, so two dictionaries hold far fewer distinct bytes and trigrams than one. A value without
    the separator is all ``before``. A ``q`` without it matches a value exactly when it is inside
    ``before`` or inside ``after`` (it cannot span the separator); a ``q`` = ``A<sep>B`` (A without
    it) spans the value's first separator (``before`` ends with A, ``after`` starts with B) or lies
    inside ``after``. Every test is made on distinct parts, so the answer is exact. The split and
    the distinct parts are the column's own (``CodedText``): this index adds the trigrams and each
    part's rows.

    Parameters:
      before(ValueDictionary): The part before the first separator (the whole value when it has none).
      after(ValueDictionary|None): The part after it; None when the column is not split (``before`` then
        holds whole values).
      with_separator(BitMap): Positions whose value has the separator.
      separator(bytes): The separator (one ASCII byte).
    """

    before: ValueDictionary
    after: ValueDictionary | None
    with_separator: BitMap
    separator: bytes = b"@"

    @classmethod
    def build(cls, text: TextData | CodedText) -> ColumnTrigrams:
        """The index of one column of an index (a raw column is dictionary-coded first)."""
        coded = text if isinstance(text, CodedText) else code_text(text)
        before = ValueDictionary.build(coded.before, coded.before_codes)
        if coded.after is None:
            return cls(before, None, BitMap(), bytes((coded.separator,)))
        after = ValueDictionary.build(coded.after, coded.after_codes)
        return cls(before, after, uint32_bitmap(np.flatnonzero(coded.after_codes)), bytes((coded.separator,)))

    def positions_holding(self, needle: bytes) -> BitMap:
        """Positions whose value holds ``needle`` (lower-cased UTF-8, three bytes or more)."""
        before, after, separator = self.before, self.after, self.separator
        if after is None:  # whole values
            return before.rows_of(before.value_ids(needle, "contains"))
        if separator not in needle:
            return before.rows_of(before.value_ids(needle, "contains")) | after.rows_of(
                after.value_ids(needle, "contains"))
        head, _, rest = needle.partition(separator)
        spanning = after.rows_of(after.value_ids(rest, "startswith")) if rest else self.with_separator
        if head and spanning:  # never in place: with_separator is shared
            spanning = spanning & before.rows_of(before.value_ids(head, "endswith"))
        return spanning | after.rows_of(after.value_ids(needle, "contains"))

    def nbytes(self) -> int:
        after = self.after.nbytes() if self.after is not None else 0
        return self.before.nbytes() + after + bitmap_bytes(self.with_separator)


def _value_trigrams(values: ValueList) -> dict[int, BitMap]:
    """trigram code -> BitMap of the ids of ``values`` holding it."""
    data = np.frombuffer(values.blob, dtype=np.uint8)
    if len(data) < 3:
        return {}
    lengths = np.diff(values.starts.astype(np.int64))
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

    def positions(self, needle: bytes) -> BitMap:
        """Positions of the index this was built from holding ``needle`` in any text column."""
        result = BitMap()
        for column in self.columns.values():
            result |= column.positions_holding(needle)
        return result

    def nbytes(self) -> int:
        return sum(column.nbytes() for column in self.columns.values())


def scanned_positions(index: EntityIndex, needle: bytes) -> BitMap:
    """Positions of ``index`` holding ``needle`` in any text column, by scanning (no trigram index)."""
    result = BitMap()
    for text in index.texts.values():
        if isinstance(text, CodedText):  # its distinct parts are what is scanned
            result |= ColumnTrigrams.build(text).positions_holding(needle)
        else:
            result |= uint32_bitmap(scan_positions(text, needle))
    return result
