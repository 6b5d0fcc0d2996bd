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

from crmtasks.search.coded_text import CodedText, ValueList
from crmtasks.search.index import (
    CodedColumn,
    EntityIndex,
    NumberColumn,
    TextData,
    compact_ids,
)
from crmtasks.search.process_memory import release_free_memory

# 2: a text column may be stored dictionary-coded (a base's are). Version 1 parts are still read.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
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
        "texts": {name: _text_meta(text) for name, text in index.texts.items()},
    }
    parts = {"meta": json.dumps(meta).encode(), "ids": np.asarray(index.ids, dtype=np.int64).tobytes()}
    for name, column in index.facets.items():
        parts[f"codes:{name}"] = column.codes.tobytes()
    for name, number in index.numbers.items():
        parts[f"values:{name}"] = np.asarray(number.values, dtype=np.int64).tobytes()
        if number.present is not None:
            parts[f"present:{name}"] = number.present.tobytes()
    for name, text in index.texts.items():
        if isinstance(text, CodedText):
            for side, values, codes in _sides(text):
                parts[f"text:{name}:{side}"] = values.blob
                parts[f"starts:{name}:{side}"] = values.starts.tobytes()
                parts[f"codes:{name}:{side}"] = codes.tobytes()
        else:
            parts[f"text:{name}"] = text.lowered
            parts[f"offsets:{name}"] = text.offsets.tobytes()
    return {prefix + name: _pack(data) for name, data in parts.items()}


def _sides(text: CodedText):
    yield "before", text.before, text.before_codes
    if text.after is not None:
        yield "after", text.after, text.after_codes


def _text_meta(text) -> dict:
    if isinstance(text, CodedText):
        return {"coded": {side: {"starts": values.starts.dtype.str, "codes": codes.dtype.str}
                          for side, values, codes in _sides(text)}, "separator": text.separator}
    return {"offsets": text.offsets.dtype.str}


def index_from_parts(entity: str, parts: dict[str, bytes], prefix: str = "") -> EntityIndex:
    """The ``EntityIndex`` stored as ``parts`` (as returned by ``index_parts``), bitmaps built.

    Held compactly (what a searching process keeps): ids as uint32 when they fit, number columns
    narrowed (``NumberColumn.compact``). Each part is dropped from ``parts`` once decoded, so the
    compressed and the decoded bytes of the whole entity are never held together; the memory the
    decoding freed is given back to the system (``release_free_memory``).
    """
    def part(name: str) -> bytes:
        return _unpack(parts.pop(prefix + name))

    def array(name: str, dtype) -> np.ndarray:
        return np.frombuffer(part(name), dtype=np.dtype(dtype))

    meta = json.loads(part("meta"))
    if meta["version"] not in READABLE_VERSIONS:
        raise ValueError(f"search index format {meta['version']} is not {FORMAT_VERSION}: rebuild it")
    ids = compact_ids(array("ids", np.int64))
    facets = {name: CodedColumn.from_codes(array(f"codes:{name}", spec["dtype"]), tuple(spec["keys"]))
              for name, spec in meta["facets"].items()}
    numbers = {name: NumberColumn.compact(array(f"values:{name}", np.int64),
                                          array(f"present:{name}", bool) if has_present else None)
               for name, has_present in meta["numbers"].items()}
    texts = {}
    for name, spec in meta["texts"].items():
        if isinstance(spec, str):  # version 1: the offsets' dtype
            spec = {"offsets": spec}
        if "offsets" in spec:
            texts[name] = TextData(part(f"text:{name}"), array(f"offsets:{name}", spec["offsets"]))
            continue
        sides = {side: (ValueList(part(f"text:{name}:{side}"), array(f"starts:{name}:{side}", dtypes["starts"])),
                        array(f"codes:{name}:{side}", dtypes["codes"]))
                 for side, dtypes in spec["coded"].items()}
        after = sides.get("after", (None, None))
        texts[name] = CodedText(*sides["before"], *after, spec["separator"])
    release_free_memory()
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
