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
from collections.abc import Callable, Sequence

import numpy as np
from pyroaring import BitMap

from crmtasks.search.index import (
    CodedColumn,
    EntityIndex,
    NumberColumn,
    TextData,
    range_mask,
)
from crmtasks.search.index_read import narrow_codes, text_data
from crmtasks.search.request import SearchRequest

# A position filter computed from a segment (text q, visibility): positions of that segment.
PositionFilter = Callable[[EntityIndex], BitMap]


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


def _code_of(column: CodedColumn) -> dict:
    """``column.code_of()``, built once per column (a column is immutable)."""
    entry = _code_tables.get(id(column))
    if entry is None or entry[0] is not column:
        if len(_code_tables) >= _CODE_TABLES_KEPT:
            _code_tables.clear()
        entry = (column, column.code_of())  # the column kept: its id is not reused meanwhile
        _code_tables[id(column)] = entry
    return entry[1]


def _facet_bitmap(column: CodedColumn, keys: Sequence[str], null_included: bool) -> BitMap:
    code_of = _code_of(column)
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
              extra: Sequence[PositionFilter]) -> tuple[np.ndarray | None, BitMap | None]:
    """``(positions, the same as a bitmap when one was at hand)``; positions None: every one not skipped."""
    index = segment.index
    sets = [_facet_bitmap(index.facets[f.facet.name], f.keys, f.null_included) for f in request.facet_filters]
    sets += [position_filter(index) for position_filter in extra]
    result: BitMap | None = None
    for bitmap in sorted(sets, key=len):
        result = bitmap if result is None else result & bitmap
        if not result:
            return np.zeros(0, dtype=np.uint32), BitMap()
    if result is not None:
        if segment.skipped:
            result = result - segment.skipped
        positions = np.frombuffer(result.to_array(), dtype=np.uint32)
    elif request.range_filters:
        mask = np.ones(len(index), dtype=bool)
        mask[_array(segment.skipped)] = False
        positions = np.flatnonzero(mask).astype(np.uint32)
    else:
        return None, None
    for range_filter in request.range_filters:
        mask = range_mask(index.numbers[range_filter.column], range_filter.kind, range_filter.bounds, positions)
        positions = positions[mask]
        result = None
    return positions, result


def _array(bitmap: BitMap) -> np.ndarray:
    return np.frombuffer(bitmap.to_array(), dtype=np.uint32)


def _counts(column: CodedColumn, matched: Matched) -> np.ndarray:
    positions, skipped = matched.positions, matched.segment.skipped
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


def count_matched(matched: Sequence[Matched], request: SearchRequest) -> tuple[dict[str, dict], int]:
    """``(facets, total)`` of evaluated segments.

    Counts are added per key across segments (each segment codes its keys its own way), then
    ordered largest first, then by key (no value last), as live counts are.
    """
    entity = request.entity
    total = sum(len(m) for m in matched)
    facets = {}
    for facet in entity.facets:
        keyed: dict = {}
        for m in matched:
            column = m.segment.index.facets[facet.name]
            counts = _counts(column, m)
            nonzero = np.flatnonzero(counts)
            keys = column.keys
            if not keyed:
                keyed = {keys[code]: n for code, n in zip(nonzero.tolist(), counts[nonzero].tolist())}
                continue
            for code, n in zip(nonzero.tolist(), counts[nonzero].tolist()):
                key = keys[code]
                keyed[key] = keyed.get(key, 0) + n
        ordered = sorted(keyed.items(), key=_largest_first)
        decode = facet.kind.decode
        facets[facet.name] = {None if key is None else decode(key): n for key, n in ordered if n > 0}
    return facets, total


def _largest_first(item: tuple) -> tuple:
    key, n = item
    return -n, key is None, key or ""


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
