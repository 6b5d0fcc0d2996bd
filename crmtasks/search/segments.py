"""Counting a search over the index: segments, filters as bitmaps, facet counts by ``numpy.bincount``.

A search sees its snapshot's rows as *segments*, each an
``EntityIndex`` with the positions it must skip:
  - the generation's base, minus the rows the delta or the change log replaced;
  - the generation's delta (rows changed between the base and the generation),
    minus the rows the change log replaced;
  - the rows changed since the generation, read live (``crmtasks.search.overlay``
    keeps them between searches, in layers, each minus the rows changed again later).
Each record is in exactly one segment, so totals and counts add up.

Within a segment: each facet filter is the union of its values' bitmaps,
filters are intersected (smallest first), extra position sets (text ``q``,
a user's visibility: functions of the segment) are intersected too, skipped
positions are removed, range filters keep the positions whose value
satisfies them (one vectorised comparison), and every facet's counts are one
``bincount`` of its codes over the positions left. Semantics are the live
SQL's: a record is counted in every facet (its own filtered field too) when
it matches every filter.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable, Sequence

import numpy as np
from pyroaring import BitMap

from crmtasks.search.facets import Facet
from crmtasks.search.index import (
    CodedColumn,
    EntityIndex,
    NumberColumn,
    TextData,
    range_mask,
)
from crmtasks.search.index_read import narrow_codes, text_data
from crmtasks.search.request import SearchRequest

# A KeptSet keeps its positions as an array too up to this many (256 KB; larger ones are made per search).
KEPT_ARRAY_POSITIONS = 65_536


class KeptSet:
    """A set of positions of one index kept between searches (a user's visible rows), and what is
    derived from it alone, made on first use: its counts per facet code, and the set minus the
    positions a segment skips (the last skipped set only: it changes only when the overlay advances).

    A search whose only filter is a kept set (a user's search with no other filter) counts from
    these: the set's counts minus the counts of its skipped positions, no pass over the set.
    Thread-safe: two threads may both compute a part; either result is the same.
    """

    def __init__(self, positions: BitMap) -> None:
        self.positions = positions
        self._counts: dict[int, tuple[CodedColumn, np.ndarray]] = {}
        self._minus: tuple[BitMap, BitMap, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.positions)

    def counts(self, column: CodedColumn) -> np.ndarray:
        """Rows of the set per code of ``column`` (a column of the set's index)."""
        held = self._counts.get(id(column))
        if held is None or held[0] is not column:
            held = (column, np.bincount(column.codes[_array(self.positions)], minlength=len(column.keys)))
            self._counts[id(column)] = held  # the column kept: its id is not reused meanwhile
        return held[1]

    def minus(self, skipped: BitMap) -> tuple[BitMap, np.ndarray]:
        """``(positions - skipped, the same as an array)``; the array is kept only up to
        ``KEPT_ARRAY_POSITIONS`` positions (memory: a process keeps many sets)."""
        held = self._minus
        if held is None or held[0] is not skipped:
            left = self.positions - skipped if skipped else self.positions
            held = (skipped, left, _array(left) if len(left) <= KEPT_ARRAY_POSITIONS else None)
            self._minus = held
        return held[1], (held[2] if held[2] is not None else _array(held[1]))


# A position filter computed from a segment (text q, visibility): positions of that segment, as a
# bitmap, or a KeptSet when the filter keeps its sets between searches.
PositionFilter = Callable[[EntityIndex], "BitMap | KeptSet"]


@dataclasses.dataclass(frozen=True)
class Segment:
    """Rows of ``index`` except the positions in ``skipped``."""

    index: EntityIndex
    skipped: BitMap


# A facet with at most this many keys, over at least this many matching positions, is counted by
# intersecting bitmaps (one C call per key, its cost following the bitmaps' containers) rather
# than by gathering the codes of every matching position (its cost following the positions):
# measured at 300k leads, one filter (25k positions) 0.44 -> 0.30 ms, three (2k) 0.12 -> 0.15 ms.
BITMAP_COUNT_KEYS = 48
BITMAP_COUNT_FROM = 20_000
# Key -> code tables kept (one per facet column of the indexes held; rebuilt when dropped).
_CODE_TABLES_KEPT = 256
_code_tables: dict[int, tuple[CodedColumn, dict]] = {}


def column_codes(column: CodedColumn) -> dict:
    """``column.code_of()``, built once per column (a column is immutable)."""
    entry = _code_tables.get(id(column))
    if entry is None or entry[0] is not column:
        if len(_code_tables) >= _CODE_TABLES_KEPT:
            _code_tables.clear()
        entry = (column, column.code_of())  # the column kept: its id is not reused meanwhile
        _code_tables[id(column)] = entry
    return entry[1]


def _facet_bitmap(column: CodedColumn, keys: Sequence[str], null_included: bool) -> BitMap:
    code_of = column_codes(column)
    wanted = [code_of[key] for key in keys if key in code_of]
    if null_included and None in code_of:
        wanted.append(code_of[None])
    if len(wanted) == 1:
        return column.bitmaps[wanted[0]]
    return BitMap.union(*(column.bitmaps[code] for code in wanted)) if wanted else BitMap()


def matching_positions(segment: Segment, request: SearchRequest,
                       extra: Sequence[PositionFilter] = ()) -> np.ndarray | None:
    """Positions of the segment matching ``request`` (sorted uint32); None for "every position not skipped"."""
    return _matching(segment, request, extra)[0]


def _matching(segment: Segment, request: SearchRequest,
              extra: Sequence[PositionFilter]) -> tuple[np.ndarray | None, BitMap | None, KeptSet | None]:
    """``(positions, the same as a bitmap when one was at hand, the kept set when it is the only filter)``;
    positions None: every one not skipped."""
    index = segment.index
    sets = [_facet_bitmap(index.facets[f.facet.name], f.keys, f.null_included) for f in request.facet_filters]
    sets += [position_filter(index) for position_filter in extra]
    if len(sets) == 1 and isinstance(sets[0], KeptSet) and not request.range_filters:
        kept = sets[0]
        result, positions = kept.minus(segment.skipped)
        return positions, result, kept
    sets = [found.positions if isinstance(found, KeptSet) else found for found in sets]
    result: BitMap | None = None
    for bitmap in sorted(sets, key=len):
        result = bitmap if result is None else result & bitmap
        if not result:
            return np.zeros(0, dtype=np.uint32), BitMap(), None
    if result is not None:
        if segment.skipped:
            result = result - segment.skipped
        positions = np.frombuffer(result.to_array(), dtype=np.uint32)
    elif request.range_filters:
        mask = np.ones(len(index), dtype=bool)
        mask[_array(segment.skipped)] = False
        positions = np.flatnonzero(mask).astype(np.uint32)
    else:
        return None, None, None
    for range_filter in request.range_filters:
        mask = range_mask(index.numbers[range_filter.column], range_filter.kind, range_filter.bounds, positions)
        positions = positions[mask]
        result = None
    return positions, result, None


def _array(bitmap: BitMap) -> np.ndarray:
    return np.frombuffer(bitmap.to_array(), dtype=np.uint32)


def _counts(column: CodedColumn, matched: Matched) -> np.ndarray:
    positions, skipped = matched.positions, matched.segment.skipped
    if matched.kept is not None:  # the kept set's counts, minus those of its skipped positions
        whole = matched.kept.counts(column)
        gone = matched.kept.positions & skipped if skipped else None
        return whole - np.bincount(column.codes[_array(gone)], minlength=len(column.keys)) if gone else whole
    if positions is None:  # every row but the skipped ones: the totals minus what is skipped
        if not skipped:
            return column.totals
        return column.totals - np.bincount(column.codes[_array(skipped)], minlength=len(column.keys))
    if matched.bitmap is not None and len(column.keys) <= BITMAP_COUNT_KEYS and len(positions) >= BITMAP_COUNT_FROM:
        bitmap = matched.bitmap
        return np.array([bitmap.intersection_cardinality(values) for values in column.bitmaps], dtype=np.int64)
    return np.bincount(column.codes[positions], minlength=len(column.keys))


@dataclasses.dataclass(frozen=True)
class Matched:
    """A segment and its positions matching a search (None: every position not skipped)."""

    segment: Segment
    positions: np.ndarray | None
    bitmap: BitMap | None = None  # the positions as a bitmap, when the filters made one
    kept: KeptSet | None = None  # the only filter, when it is a kept set (its counts are kept with it)

    def __len__(self) -> int:
        if self.positions is None:
            return len(self.segment.index) - len(self.segment.skipped)
        return len(self.positions)


def evaluate(segments: Sequence[Segment], request: SearchRequest,
             extra: Sequence[PositionFilter] = ()) -> list[Matched]:
    """Each non-empty segment with its matching positions, computed once for the counts and the page."""
    return [Matched(segment, *_matching(segment, request, extra)) for segment in segments if len(segment.index)]


def count(segments: Sequence[Segment], request: SearchRequest,
          extra: Sequence[PositionFilter] = ()) -> tuple[dict[str, dict], int]:
    """``(facets, total)`` over the segments: facets as ``faceted_search`` returns them (decoded, largest first)."""
    return count_matched(evaluate(segments, request, extra), request)


# Per entity, the answer of a search with no filter and the segments it is of (weakly: an old
# generation's index is not kept alive by it). An overlay's segments are the same objects until it
# advances, so such a search counts once per change, not once per search.
_unfiltered: dict[str, tuple[tuple[weakref.ref, ...], dict[str, dict], int]] = {}


def count_matched(matched: Sequence[Matched], request: SearchRequest) -> tuple[dict[str, dict], int]:
    """``(facets, total)`` of evaluated segments.

    Counts are added per key across segments (each segment codes its keys its own way), then
    ordered largest first, then by key (no value last), as live counts are.
    """
    entity = request.entity
    unfiltered = all(m.positions is None for m in matched)
    if unfiltered:
        held = _unfiltered.get(entity.name)
        if held is not None and len(held[0]) == len(matched) and all(
                ref() is m.segment for ref, m in zip(held[0], matched)):
            return {name: dict(counts) for name, counts in held[1].items()}, held[2]  # copies: the caller's own
    total = sum(len(m) for m in matched)
    facets = {}
    for facet in entity.facets:
        parts = [(m.segment.index.facets[facet.name], _counts(m.segment.index.facets[facet.name], m))
                 for m in matched]
        facets[facet.name] = _ordered_counts(facet, parts)
    if unfiltered:
        _unfiltered[entity.name] = (tuple(weakref.ref(m.segment) for m in matched), facets, total)
        return {name: dict(counts) for name, counts in facets.items()}, total
    return facets, total


@dataclasses.dataclass(frozen=True)
class _KeyTable:
    """Segments' keys of one facet merged, as the API returns them and in their order (no value last).

    ``codes[i]``: the merged code of each code of the i-th column; ``decoded`` and ``rank`` are per merged code.
    Made once per tuple of columns (columns are immutable).
    """

    codes: tuple[np.ndarray, ...]
    decoded: tuple
    rank: np.ndarray


_KEY_TABLES_KEPT = 256
_key_tables: dict[tuple[int, ...], tuple[tuple[CodedColumn, ...], _KeyTable]] = {}


def _key_table(columns: tuple[CodedColumn, ...], facet: Facet) -> _KeyTable:
    ids = tuple(map(id, columns))
    entry = _key_tables.get(ids)
    if entry is None or any(held is not column for held, column in zip(entry[0], columns)):
        if len(_key_tables) >= _KEY_TABLES_KEPT:
            _key_tables.clear()
        merged: dict[str | None, int] = {}
        codes = tuple(np.array([merged.setdefault(key, len(merged)) for key in column.keys], dtype=np.int64)
                      for column in columns)
        keys = list(merged)
        decoded = tuple(None if key is None else facet.kind.decode(key) for key in keys)
        by_key = sorted(range(len(keys)), key=lambda code: (keys[code] is None, keys[code] or ""))
        rank = np.empty(len(keys), dtype=np.int64)
        rank[by_key] = np.arange(len(keys), dtype=np.int64)
        entry = (columns, _KeyTable(codes, decoded, rank))  # the columns kept: their ids are not reused meanwhile
        _key_tables[ids] = entry
    return entry[1]


def _ordered_counts(facet: Facet, parts: Sequence[tuple[CodedColumn, np.ndarray]]) -> dict:
    """``{value: count}`` of one facet over the segments' counts per code, largest first, then by key.

    The segments' keys are merged, decoded and ranked once per tuple of columns (``_key_table``):
    a search adds the counts and orders them with numpy, with no Python work per key but the dict.
    """
    if not parts:
        return {}
    table = _key_table(tuple(column for column, _ in parts), facet)
    if len(parts) == 1:
        total = parts[0][1]
    else:
        total = np.zeros(len(table.rank), dtype=np.int64)
        for codes, (_, counts) in zip(table.codes, parts):
            total[codes] += counts  # a column's keys are distinct: no merged code twice in one part
    nonzero = np.flatnonzero(total > 0)
    if not len(nonzero):
        return {}
    values = total[nonzero]
    order = np.lexsort((table.rank[nonzero], -values))
    decoded = table.decoded
    return dict(zip([decoded[code] for code in nonzero[order].tolist()], values[order].tolist()))


def unskipped_positions(segment: Segment, wanted: int, last: bool) -> np.ndarray:
    """The first (or last) ``wanted`` positions of the segment that are not skipped, ascending."""
    length, skipped = len(segment.index), segment.skipped
    if last:
        low = max(0, length - wanted)
        while low > 0:  # widen the window by what the skipped positions in it took
            short = wanted - ((length - low) - skipped.range_cardinality(low, length))
            if short <= 0:
                break
            low = max(0, low - short)
        window = BitMap(range(low, length))
    else:
        high = min(length, wanted)
        while high < length:
            short = wanted - (high - skipped.range_cardinality(0, high))
            if short <= 0:
                break
            high = min(length, high + short)
        window = BitMap(range(high))
    positions = _array(window - skipped) if skipped else _array(window)
    return positions[-wanted:] if last else positions[:wanted]


def matching_ids(matched: Sequence[Matched], wanted: int | None, descending: bool) -> np.ndarray:
    """Matching ids, ascending: all of them, or only the ``wanted`` largest (``descending``) or smallest ones."""
    parts = []
    for m in matched:
        positions = m.positions
        if positions is None:
            if wanted is None:
                positions = _array(BitMap(range(len(m.segment.index))) - m.segment.skipped)
            else:
                positions = unskipped_positions(m.segment, wanted, descending)
        elif wanted is not None:  # ids ascend with positions: the first or last ``wanted`` are enough
            positions = positions[-wanted:] if descending else positions[:wanted]
        parts.append(m.segment.index.ids[positions])
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


def _texts(text: TextData, positions: np.ndarray) -> list[bytes]:
    return text.values_at(positions)  # a TextData or a base's CodedText


def combine(entity: str, parts: Sequence[tuple[EntityIndex, np.ndarray]]) -> EntityIndex:
    """One index of the rows at ``positions`` of each index (ids distinct across parts), sorted by id.

    Used to fold a delta into a new delta and to compare an incremental index with a full build:
    cost follows the rows kept, so keep it to deltas (or tests).
    """
    parts = [(index, np.asarray(positions, dtype=np.int64)) for index, positions in parts]
    ids = np.concatenate([index.ids[positions] for index, positions in parts]) if parts else np.zeros(0, np.int64)
    order = np.argsort(ids, kind="stable")
    first = parts[0][0]
    facets = {}
    for name in first.facets:
        keys: dict[str | None, int] = {}
        codes = []
        for index, positions in parts:
            column = index.facets[name]
            remap = np.array([keys.setdefault(key, len(keys)) for key in column.keys], dtype=np.uint32)
            codes.append(remap[column.codes[positions]] if len(remap) else np.zeros(0, np.uint32))
        merged = np.concatenate(codes)[order] if codes else np.zeros(0, np.uint32)
        facets[name] = CodedColumn.from_codes(narrow_codes(merged, len(keys)), tuple(keys))
    numbers = {}
    for name, number in first.numbers.items():
        values = np.concatenate([index.numbers[name].values[positions] for index, positions in parts])[order]
        present = [index.numbers[name].present for index, _ in parts]
        flags = None if number.present is None else np.concatenate(
            [p[positions] for p, (_, positions) in zip(present, parts)])[order]
        numbers[name] = NumberColumn(values, flags)
    texts = {}
    for name in first.texts:
        values = [value for index, positions in parts for value in _texts(index.texts[name], positions)]
        texts[name] = text_data([values[i] for i in order])
    return EntityIndex(entity, ids[order], facets, numbers, texts)
