"""Text search (``q``) from memory: the positions of the rows whose text columns contain ``q`` as ILIKE finds them.

Today's live SQL keeps a row when any text column ``ILIKE '%' || like_escape(q) || '%'``
(crmtasks.search.sql.where_clause). On a UTF8 database PostgreSQL evaluates that as:
lower-case pattern and text with the server's ``lower()``, then compare bytes, so a row
matches exactly when ``lower(q)`` is a substring of ``lower(column)`` for some non-NULL
column (the escaped wildcards match themselves). This index answers that question:

Per text column it keeps
  - the column's distinct values, lower-cased by the server while the index is built, as
    UTF-8, each ended by a NUL byte (PostgreSQL text holds no NUL), in one bytes object;
  - trigram (three consecutive bytes) -> BitMap of the value ids holding it;
  - value id -> row positions (``row_starts``/``row_positions``, compressed sparse rows).
Distinct values rather than rows because names and companies repeat: the trigram
bitmaps and the substring checks then cost what is distinct, not what is stored.

A search lower-cases ``q`` with the server's case map (crmtasks.search.text_case),
ANDs the bitmaps of its trigrams (every trigram of a substring is in the value), checks
each candidate value for the whole substring (one vectorised pass; a three-byte ``q``
needs none), and turns the matching values into row positions. Exact by construction,
never an approximation: a value is kept only when it holds the bytes of ``lower(q)``.

Positions are those of the core index (rows sorted by id, 0..n-1), read in the same
snapshot as the core index (``build_text_index`` takes the build's cursor).
"""

from __future__ import annotations

import array
import dataclasses
import io
import json
import re
from collections.abc import Sequence

import numpy as np
from psycopg2 import sql
from pyroaring import BitMap

from crmtasks.search.facets import Entity
from crmtasks.search.text_case import CaseMap, default_collation, read_case_map

# Bytes gathered at once when candidate values are checked (bounds the temporary array).
_CHECK_CHUNK_BYTES = 4 << 20
_FORMAT = 1
# COPY's text format escapes (PostgreSQL writes only these when it copies out).
_COPY_ESCAPES = {b"\\": b"\\", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f", b"v": b"\v"}
_COPY_ESCAPE = re.compile(rb"\\(.)", re.DOTALL)


def _uint32_bitmap(positions: np.ndarray) -> BitMap:
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


@dataclasses.dataclass
class ColumnText:
    """One text column's part of the index (see the module docstring).

    Parameters:
      values(bytes): Distinct lower-cased values, UTF-8, each followed by a NUL byte; value 0 stands for NULL.
      value_starts(ndarray): uint32 (int64 past 4 GiB), offset of each value in ``values`` (one more entry than values).
      trigrams(dict): trigram code -> BitMap of value ids holding it.
      row_starts(ndarray): uint32, value id -> first index into ``row_positions`` (one more entry than values).
      row_positions(ndarray): uint32, row positions grouped by value id.
    """

    values: bytes
    value_starts: np.ndarray
    trigrams: dict[int, BitMap]
    row_starts: np.ndarray
    row_positions: np.ndarray

    @classmethod
    def build(cls, lowered: list[bytes | None]) -> ColumnText:
        """The column part from each row's lower-cased value (None for NULL), rows in position order."""
        distinct: dict[bytes | None, int] = {None: 0}
        codes = np.fromiter((distinct.setdefault(value, len(distinct)) for value in lowered),
                            dtype=np.uint32, count=len(lowered))
        texts = [b"" if value is None else value for value in distinct]
        values = b"\x00".join(texts) + b"\x00"
        lengths = np.fromiter((len(text) + 1 for text in texts), dtype=np.int64, count=len(texts))
        value_starts = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(lengths, out=value_starts[1:])
        order = np.argsort(codes, kind="stable").astype(np.uint32)
        row_starts = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(np.bincount(codes, minlength=len(texts)), out=row_starts[1:])
        return cls(values, _compact(value_starts), _value_trigrams(values, lengths), _compact(row_starts), order)

    def rows_containing(self, needle: bytes) -> BitMap:
        """Positions of the rows whose value contains ``needle`` (lower-cased UTF-8, three bytes or more)."""
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
            ids = ids[self._contains(ids, needle)]
        return self._rows_of(ids)

    def _contains(self, ids: np.ndarray, needle: bytes) -> np.ndarray:
        """For each value id, whether the value holds ``needle``: values gathered into fixed-width rows, then found."""
        data = np.frombuffer(self.values, dtype=np.uint8)
        starts = self.value_starts[ids].astype(np.int64)
        lengths = self.value_starts[ids + 1].astype(np.int64) - starts - 1
        found = np.zeros(len(ids), dtype=bool)
        width = int(lengths.max()) if len(ids) else 0
        if width < len(needle):
            return found
        step = max(1, _CHECK_CHUNK_BYTES // width)
        offsets = np.arange(width, dtype=np.int64)
        for first in range(0, len(ids), step):
            chunk = slice(first, first + step)
            # Padding reads the value's own NUL terminator, clamped: values hold no NUL, so it never matches.
            index = np.minimum(starts[chunk, None] + offsets, starts[chunk, None] + lengths[chunk, None])
            rows = np.ascontiguousarray(data[index]).view(f"S{width}").ravel()
            found[chunk] = np.char.find(rows, needle) >= 0
        return found

    def _rows_of(self, ids: np.ndarray) -> BitMap:
        starts = self.row_starts[ids].astype(np.int64)
        counts = self.row_starts[ids + 1].astype(np.int64) - starts
        total = int(counts.sum())
        if not total:
            return BitMap()
        index = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(total, dtype=np.int64)
        return _uint32_bitmap(np.sort(self.row_positions[index]))

    def nbytes(self) -> int:
        """Bytes held by this column's structures (serialized bitmap size stands for the bitmaps')."""
        bitmaps = sum(bitmap.get_statistics()["n_bytes_array_containers"]
                      + bitmap.get_statistics()["n_bytes_bitset_containers"]
                      + bitmap.get_statistics()["n_bytes_run_containers"] for bitmap in self.trigrams.values())
        return len(self.values) + self.value_starts.nbytes + self.row_starts.nbytes + self.row_positions.nbytes + bitmaps


def _value_trigrams(values: bytes, lengths: np.ndarray) -> dict[int, BitMap]:
    """trigram code -> BitMap of the value ids holding it, over the NUL-separated ``values``."""
    data = np.frombuffer(values, dtype=np.uint8)
    if len(data) < 3:
        return {}
    codes = _trigram_codes(data)
    value_ids = np.repeat(np.arange(len(lengths), dtype=np.uint64), lengths)[:-2]
    inside = (data[:-2] != 0) & (data[1:-1] != 0) & (data[2:] != 0)
    keys = np.sort((codes[inside].astype(np.uint64) << np.uint64(32)) | value_ids[inside])
    trigram_of = (keys >> np.uint64(32)).astype(np.uint32)
    bounds = np.concatenate(([0], np.flatnonzero(np.diff(trigram_of)) + 1, [len(keys)]))
    value_of = (keys & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return {int(trigram_of[start]): _uint32_bitmap(value_of[start:end])  # repeats within a value collapse here
            for start, end in zip(bounds[:-1].tolist(), bounds[1:].tolist())}


@dataclasses.dataclass
class TextIndex:
    """The text part of one entity's index.

    Parameters:
      entity(str): The entity's name.
      columns(tuple): Its text column names (Entity.text_columns), in order.
      row_count(int): Rows indexed: positions 0..row_count-1.
      case_map(CaseMap): The server's lower() the values were lower-cased with, applied to ``q``.
      parts(tuple): ColumnText per column.
    """

    entity: str
    columns: tuple[str, ...]
    row_count: int
    case_map: CaseMap
    parts: tuple[ColumnText, ...]

    def needle(self, q: str) -> bytes:
        """``q`` as the bytes searched for: the server's ``lower(q)`` in UTF-8."""
        return self.case_map.lower(q).encode("utf-8")

    def matching(self, q: str) -> BitMap:
        """Positions of the indexed rows ILIKE ``'%' || like_escape(q) || '%'`` keeps (q as checked by the request)."""
        needle = self.needle(q)
        result = BitMap()
        for part in self.parts:
            result |= part.rows_containing(needle)
        return result

    def row_matches(self, q: str, texts: Sequence[str | None]) -> bool:
        """Whether a row whose text columns hold ``texts`` (as stored, in ``columns`` order) matches ``q``.

        For rows changed since the index was built (the read-time overlay).
        """
        needle = self.case_map.lower(q)
        return any(text is not None and needle in self.case_map.lower(text) for text in texts)

    def nbytes(self) -> int:
        return sum(part.nbytes() for part in self.parts)

    def to_bytes(self) -> bytes:
        """The index as one bytes object (numpy's npz, no pickle), for publication with the generation."""
        arrays = {"meta": np.frombuffer(json.dumps({
            "format": _FORMAT, "entity": self.entity, "columns": list(self.columns), "row_count": self.row_count,
            "case_map": self.case_map.to_json_ready()}).encode(), dtype=np.uint8)}
        for i, part in enumerate(self.parts):
            keys = sorted(part.trigrams)
            blobs = [part.trigrams[key].serialize() for key in keys]
            bounds = np.zeros(len(blobs) + 1, dtype=np.int64)
            np.cumsum([len(blob) for blob in blobs], out=bounds[1:])
            arrays.update({
                f"values{i}": np.frombuffer(part.values, dtype=np.uint8), f"value_starts{i}": part.value_starts,
                f"row_starts{i}": part.row_starts, f"row_positions{i}": part.row_positions,
                f"trigram_keys{i}": np.array(keys, dtype=np.uint32), f"trigram_bounds{i}": bounds,
                f"trigram_bitmaps{i}": np.frombuffer(b"".join(blobs), dtype=np.uint8)})
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TextIndex:
        """The index ``to_bytes`` wrote; ValueError when it is of another format."""
        arrays = np.load(io.BytesIO(data), allow_pickle=False)
        meta = json.loads(arrays["meta"].tobytes())
        if meta.get("format") != _FORMAT:
            raise ValueError(f"text index format {meta.get('format')!r}, expected {_FORMAT}")
        parts = []
        for i in range(len(meta["columns"])):
            blob, bounds = arrays[f"trigram_bitmaps{i}"].tobytes(), arrays[f"trigram_bounds{i}"].tolist()
            trigrams = {key: BitMap.deserialize(blob[bounds[j]:bounds[j + 1]])
                        for j, key in enumerate(arrays[f"trigram_keys{i}"].tolist())}
            parts.append(ColumnText(arrays[f"values{i}"].tobytes(), arrays[f"value_starts{i}"], trigrams,
                                    arrays[f"row_starts{i}"], arrays[f"row_positions{i}"]))
        return cls(meta["entity"], tuple(meta["columns"]), int(meta["row_count"]),
                   CaseMap.from_json_ready(meta["case_map"]), tuple(parts))


def _copy_lowered(cur, entity: Entity, column: str) -> list[bytes | None]:
    """``lower(column)`` of every row, in id order, as UTF-8 bytes (None for NULL): one COPY, no per-row objects."""
    statement = sql.SQL("COPY (SELECT lower({column}) FROM {table} ORDER BY id) TO STDOUT").format(
        column=sql.Identifier(column), table=sql.Identifier(entity.table))
    buffer = io.BytesIO()
    cur.copy_expert(statement.as_string(cur.connection), buffer)
    lines = buffer.getvalue().split(b"\n")[:-1]
    return [None if line == b"\\N" else _COPY_ESCAPE.sub(lambda m: _COPY_ESCAPES.get(m.group(1), m.group(1)), line)
            if b"\\" in line else line for line in lines]


def build_text_index(cur, entity: Entity, row_count: int, case_map: CaseMap | None = None) -> TextIndex | None:
    """The text index of ``entity`` read with ``cur``, or None when text search must stay live SQL.

    Run it inside the transaction (snapshot) the core index reads its ids in: positions are
    rows in id order, and ``row_count`` (the core's) is checked. None when the server's
    lower() is not code point by code point or a text column has a collation of its own
    (crmtasks.search.text_case), or the connection's client encoding is not UTF8.
    Read only. ``case_map``: one read already (it costs half a second; one per build is enough).
    """
    if cur.connection.encoding not in ("UTF8", "UNICODE"):
        return None
    if case_map is None:
        case_map = read_case_map(cur)
    if case_map is None or not default_collation(cur, entity.table, entity.text_columns):
        return None
    parts = []
    for column in entity.text_columns:
        lowered = _copy_lowered(cur, entity, column)
        if len(lowered) != row_count:
            raise ValueError(f"{entity.name}.{column}: {len(lowered)} rows, the core index has {row_count}; "
                             "read both in one snapshot")
        parts.append(ColumnText.build(lowered))
    return TextIndex(entity.name, tuple(entity.text_columns), row_count, case_map, tuple(parts))
