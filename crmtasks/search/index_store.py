"""Storing the search index in PostgreSQL (``search_index_parts``) and reading it back.

An ``EntityIndex`` becomes named parts: ``meta`` (JSON: row count, facet
keys, which columns are stored how), ``ids``, ``codes:<facet>``,
``values:<column>`` and ``present:<column>`` for numbers, ``text:<column>``
and ``offsets:<column>`` for lowered text. Each part is the array's raw
bytes (``ndarray.tobytes``), compressed with zstandard level 1 (fast, and
text and codes shrink several times). Bitmaps are not stored: a loading
process builds them from the codes, one stable sort per facet, so codes
are the one source of truth. A delta generation stores the same parts with
the prefix ``delta:`` plus ``removed`` (ids of base rows it replaces or
deletes).
"""

from __future__ import annotations

import json

import numpy as np
import zstandard

from crmtasks.search.index import CodedColumn, EntityIndex, NumberColumn, TextData

FORMAT_VERSION = 1
_LEVEL = 1


def _pack(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=_LEVEL).compress(data)


def _unpack(data) -> bytes:
    return zstandard.ZstdDecompressor().decompress(bytes(data))


def index_parts(index: EntityIndex, prefix: str = "") -> dict[str, bytes]:
    """The parts of ``index`` (compressed), names prefixed by ``prefix``."""
    meta = {
        "version": FORMAT_VERSION, "rows": len(index.ids),
        "facets": {name: {"keys": list(column.keys), "dtype": column.codes.dtype.str}
                   for name, column in index.facets.items()},
        "numbers": {name: column.present is not None for name, column in index.numbers.items()},
        "texts": {name: text.offsets.dtype.str for name, text in index.texts.items()},
    }
    parts = {"meta": json.dumps(meta).encode(), "ids": index.ids.tobytes()}
    for name, column in index.facets.items():
        parts[f"codes:{name}"] = column.codes.tobytes()
    for name, number in index.numbers.items():
        parts[f"values:{name}"] = number.values.tobytes()
        if number.present is not None:
            parts[f"present:{name}"] = number.present.tobytes()
    for name, text in index.texts.items():
        parts[f"text:{name}"] = text.lowered
        parts[f"offsets:{name}"] = text.offsets.tobytes()
    return {prefix + name: _pack(data) for name, data in parts.items()}


def index_from_parts(entity: str, parts: dict[str, bytes], prefix: str = "") -> EntityIndex:
    """The ``EntityIndex`` stored as ``parts`` (as returned by ``index_parts``), bitmaps built."""
    def part(name: str) -> bytes:
        return _unpack(parts[prefix + name])

    meta = json.loads(part("meta"))
    if meta["version"] != FORMAT_VERSION:
        raise ValueError(f"search index format {meta['version']} is not {FORMAT_VERSION}: rebuild it")
    ids = np.frombuffer(part("ids"), dtype=np.int64)
    facets = {name: CodedColumn.from_codes(np.frombuffer(part(f"codes:{name}"), dtype=np.dtype(spec["dtype"])),
                                           tuple(spec["keys"]))
              for name, spec in meta["facets"].items()}
    numbers = {name: NumberColumn(np.frombuffer(part(f"values:{name}"), dtype=np.int64),
                                  np.frombuffer(part(f"present:{name}"), dtype=bool) if has_present else None)
               for name, has_present in meta["numbers"].items()}
    texts = {name: TextData(part(f"text:{name}"), np.frombuffer(part(f"offsets:{name}"), dtype=np.dtype(dtype)))
             for name, dtype in meta["texts"].items()}
    return EntityIndex(entity, ids, facets, numbers, texts)


def removed_part(ids: np.ndarray) -> bytes:
    return _pack(np.asarray(ids, dtype=np.int64).tobytes())


def removed_from_part(data) -> np.ndarray:
    return np.frombuffer(_unpack(data), dtype=np.int64)


def write_parts(cur, generation: int, entity: str, parts: dict[str, bytes]) -> int:
    """Insert ``parts`` of ``entity`` into ``generation``; the bytes written."""
    for name, data in parts.items():
        cur.execute("INSERT INTO search_index_parts (generation_id, entity, part, data) VALUES (%s, %s, %s, %s)",
                    (generation, entity, name, data))
    return sum(len(data) for data in parts.values())


def read_parts(cur, generation: int, entity: str) -> dict[str, bytes]:
    """Every part of ``entity`` in ``generation``, read in the caller's open transaction.

    The search's statement timeout (CRMTASKS_SEARCH_TIMEOUT_MS) bounds searches, not this read: at 10M
    leads a generation is hundreds of MB and takes seconds to fetch once per process. So the read runs
    without a timeout and the transaction's own is put back afterwards (``set_config(..., true)``: local).
    """
    cur.execute("SELECT current_setting('statement_timeout'), set_config('statement_timeout', '0', true)")
    saved = cur.fetchone()[0]
    cur.execute("SELECT part, data FROM search_index_parts WHERE generation_id = %s AND entity = %s",
                (generation, entity))
    parts = {name: bytes(data) for name, data in cur.fetchall()}
    cur.execute("SELECT set_config('statement_timeout', %s, true)", (saved,))
    return parts
