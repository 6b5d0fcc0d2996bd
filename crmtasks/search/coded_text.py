"""A text column of a generation's base, dictionary-coded: each distinct part once, small codes per row.

Why: a searching process holds every entity's base in memory, and its text columns were most of
it, as NUL-joined rows (``TextData``): 37 of 61 MB at 300k leads (and the other entities at the
bench's ratios). But values are made of parts that repeat: e-mail addresses are a local part
(the person's name) and a domain (the company), each repeated; names and company names are a
first word and the rest, each from a far smaller set than the whole. So each value is split at
the first *separator*, ``@`` in a column holding one (e-mail), else a space (where the whole values
are not already few), into ``before`` and ``after``, and each side is coded against its distinct
parts; a row then costs a code of 1, 2 or 4 bytes per side (by how many distinct parts there are)
instead of its bytes and a 4-byte offset.

The same split is what the trigram index searches (crmtasks.search.text_index): a ``q`` without
the separator is inside one side, one with it spans the value's first separator or lies inside
``after``, so every test is made on distinct parts and stays exact.

The coding is made once, when the base is built (``crmtasks.search.precompute``), and stored as
such (``crmtasks.search.index_store``); a loading process only decompresses the arrays. A delta
and the rows read live stay ``TextData``: they are small and are scanned.

Exact: ``value`` gives back the lowered value byte for byte (``before``, then the separator and
``after`` when the row has the separator).
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np

from crmtasks.search.index import EntityIndex, TextData, narrow_unsigned

# Separators a column is split at: the first "@" where the column holds one (e-mail), else the first space.
AT, SPACE = ord("@"), ord(" ")


@dataclasses.dataclass(frozen=True)
class ValueList:
    """Byte strings (lower-cased UTF-8, no NUL), each followed by a NUL byte in one blob.

    Parameters:
      blob(bytes): The values, each followed by NUL.
      starts(ndarray): Offset of each value in ``blob``, one more entry than values (uint32 while
        the blob is under 4 GiB, else int64).
    """

    blob: bytes
    starts: np.ndarray

    @classmethod
    def of(cls, values: list[bytes]) -> ValueList:
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values)) + 1
        starts = np.zeros(len(values) + 1, dtype=np.int64)
        np.cumsum(lengths, out=starts[1:])
        blob = b"\0".join(values) + (b"\0" if values else b"")
        return cls(blob, starts.astype(np.uint32) if starts[-1] < 2**32 else starts)

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, value_id: int) -> bytes:
        return self.blob[int(self.starts[value_id]):int(self.starts[value_id + 1]) - 1]

    def nbytes(self) -> int:
        return len(self.blob) + self.starts.nbytes


@dataclasses.dataclass(frozen=True)
class CodedText:
    """A lowered text column as distinct parts and codes per row (see the module docstring).

    Parameters:
      before(ValueList): Distinct parts before the first separator (the whole value when it has none);
        value 0 is the empty string (NULL is stored as empty, as in ``TextData``).
      before_codes(ndarray): Per row, an index into ``before`` (uint8/16/32).
      after(ValueList|None): Distinct parts after the first separator; value 0 stands for "no separator"
        (the empty part of a value ending with it has an id of its own). None when the column is not
        split (no row has the separator, or its whole values are few: ``code_text``); ``before`` then
        holds whole values.
      after_codes(ndarray|None): Per row, an index into ``after``; 0 when the row has no separator.
      separator(int): The byte the values are split at (``AT`` or ``SPACE``, ASCII: never inside a
        multi-byte character).
    """

    before: ValueList
    before_codes: np.ndarray
    after: ValueList | None
    after_codes: np.ndarray | None
    separator: int = AT

    def __len__(self) -> int:
        return len(self.before_codes)

    def value_bytes(self, position: int) -> bytes:
        head = self.before[int(self.before_codes[position])]
        if self.after_codes is None or not self.after_codes[position]:
            return head
        return head + bytes((self.separator,)) + self.after[int(self.after_codes[position])]

    def value(self, position: int) -> str:
        return self.value_bytes(position).decode()

    def values_at(self, positions) -> list[bytes]:
        return [self.value_bytes(int(p)) for p in positions]

    def nbytes(self) -> int:
        total = self.before.nbytes() + self.before_codes.nbytes
        if self.after is not None:
            total += self.after.nbytes() + self.after_codes.nbytes
        return total


def _code(parts: list[bytes], first: tuple = (b"",)) -> tuple[np.ndarray, list]:
    """``(codes, values)``: the code of each of ``parts``, and the distinct values by code, ``first`` first,
    then the others in the order they first appear.

    One pass of C loops (a ``defaultdict`` whose missing key gets the table's length as its code, looked
    up through ``map``), no Python frame per row: about half the cost of a generator of ``setdefault``.
    """
    table: collections.defaultdict = collections.defaultdict(None, zip(first, range(len(first))))
    table.default_factory = table.__len__  # called before the key is inserted: the next code
    codes = np.fromiter(map(table.__getitem__, parts), dtype=np.uint32, count=len(parts))
    return codes, list(table)


def _rows(blob: bytes, count: int) -> list[bytes]:
    return blob.split(b"\0")[:count] if count else []


def _whole_bytes(parts: list[bytes]) -> int:
    """Bytes of the ``ValueList`` of the distinct values of ``parts`` with the empty value: a set, not a coding."""
    distinct = set(parts)
    distinct.add(b"")
    return sum(map(len, distinct)) + len(distinct)


def code_text(text: TextData) -> CodedText:
    """``text`` (a ``TextData``) dictionary-coded: split at its separator, or whole where that is smaller.

    An e-mail column is always split at ``@``. Another is split at the first space only when its distinct
    values would take more than a byte per row whole (companies, deal names: their first words and the
    rest repeat far more than the whole), which a set of the rows tells without coding them. Names, whose
    few thousand distinct values already take less, stay whole: one code per row, and one list of rows
    per value in the trigram index instead of two.
    """
    rows = len(text.offsets) - 1
    if b"@" in text.lowered:
        separator = AT
    else:
        separator = SPACE
        parts = _rows(text.lowered, rows)
        if b" " not in text.lowered or _whole_bytes(parts) <= rows:
            codes, values = _code(parts)
            whole = ValueList.of(values)
            return CodedText(whole, narrow_unsigned(codes, len(whole)), None, None, separator)
        del parts
    before, after, split = split_at_first(text, separator)
    before_codes, values = _code(_rows(before, rows))
    before_values = ValueList.of(values)
    # 0: no separator; an empty part after one has an id of its own
    after_codes, values = _code(_rows(after, rows), (None,))
    after_codes[~split] = 0
    after_values = ValueList.of([b""] + values[1:])
    return CodedText(before_values, narrow_unsigned(before_codes, len(before_values)), after_values,
                     narrow_unsigned(after_codes, len(after_values)), separator)


def split_at_first(text: TextData, separator: int) -> tuple[bytes, bytes, np.ndarray]:
    """``(before, after, split)``: each row's part before its first ``separator`` and after it, as NUL-joined
    rows (one NUL per row, so both split into as many parts as rows), and a bool per row: it has one.

    Vectorised over the bytes: each row is three runs (kept, dropped, kept) of a byte mask.
    """
    data = np.frombuffer(text.lowered, dtype=np.uint8)
    offsets = text.offsets.astype(np.int64)
    rows = len(offsets) - 1
    found = np.flatnonzero(data == separator)
    found_row = np.searchsorted(offsets, found, side="right") - 1
    first_of_row, index = np.unique(found_row, return_index=True)
    first = np.full(rows, -1, dtype=np.int64)
    first[first_of_row] = found[index]
    split = first >= 0
    starts, ends = offsets[:-1], offsets[1:] - 1  # each row's first byte and its NUL
    cut = np.where(split, first, ends)
    resume = np.where(split, first + 1, ends)
    runs = np.tile(np.array([True, False, True]), rows)
    # before: [start, cut) kept, [cut, NUL) dropped, the NUL kept
    before = data[np.repeat(runs, np.column_stack((cut - starts, ends - cut, np.ones(rows, np.int64))).ravel())]
    # after: nothing before ``resume`` (the byte after the separator, or the NUL), then up to the NUL
    kept = np.column_stack((np.zeros(rows, np.int64), resume - starts, ends + 1 - resume)).ravel()
    after = data[np.repeat(runs, kept)]
    return before.tobytes(), after.tobytes(), split


def with_coded_texts(index: EntityIndex) -> EntityIndex:
    """``index`` with its raw text columns dictionary-coded (the rest shared, not copied)."""
    texts = {name: code_text(text) if isinstance(text, TextData) else text for name, text in index.texts.items()}
    return dataclasses.replace(index, texts=texts)
