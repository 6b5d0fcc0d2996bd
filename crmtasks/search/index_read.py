"""Reading an entity's rows from PostgreSQL into an ``EntityIndex`` (a whole table, or the rows of some ids).

One ``COPY (SELECT ...) TO STDOUT`` in the caller's transaction (so its
snapshot), rows in id order: the facet bucket keys are computed by the same
SQL expressions live search groups by (``FacetKind.key_sql``), numbers are
converted to whole units by PostgreSQL (microseconds, days, cents), and text
columns come lowered by PostgreSQL's ``lower()``, which is what ``ILIKE``
compares. Rows arrive as COPY text and are parsed block by block, so the
peak memory is one block of Python objects plus the arrays being built.
"""

from __future__ import annotations

import numpy as np
from psycopg2 import sql

from crmtasks.search.facets import Entity
from crmtasks.search.index import INT64_MAX, INT64_MIN, CodedColumn, EntityIndex, NumberColumn, TextData
from crmtasks.search.kinds import ROW_ALIAS, Amount, Date, TextColumn, Timestamp, UserColumn

# Rows parsed per block: big enough that per-block overhead vanishes, small enough to bound memory.
BLOCK_ROWS = 65_536
_NULL = b"\\N"
_UNESCAPES = {b"\\\\": b"\\", b"\\t": b"\t", b"\\n": b"\n", b"\\r": b"\r", b"\\b": b"\b", b"\\f": b"\f",
              b"\\v": b"\v"}


def stored_columns(entity: Entity) -> tuple[list[str], list[str]]:
    """``(numbers, texts)``: the entity's columns kept as NumberColumn and as TextData (the others are facets)."""
    facet_columns = {facet.kind.column for facet in entity.facets
                     if isinstance(facet.kind, (TextColumn, UserColumn)) and facet.kind.alias == ROW_ALIAS}
    texts = list(entity.text_columns)
    numbers = [column for column in entity.columns
               if column != "id" and column not in texts and column not in facet_columns]
    return numbers, texts


def _number_sql(entity: Entity, column: str) -> sql.Composable:
    c = sql.Identifier(ROW_ALIAS, column)
    kind = entity.ranges.get(column)
    if isinstance(kind, Timestamp):
        finite = sql.SQL("(extract(epoch FROM {c}) * 1000000)::bigint").format(c=c)
        zero = sql.SQL("'epoch'::timestamptz")
    elif isinstance(kind, Date):
        finite, zero = sql.SQL("({c} - DATE '1970-01-01')::bigint").format(c=c), sql.SQL("DATE '1970-01-01'")
    elif isinstance(kind, Amount):
        return sql.SQL("({c} * 100)::bigint").format(c=c)
    else:
        return sql.SQL("{c}::bigint").format(c=c)
    return sql.SQL("CASE WHEN {c} IS NULL THEN NULL WHEN isfinite({c}) THEN {finite} "
                   "WHEN {c} > {zero} THEN ({max})::bigint ELSE ({min})::bigint END").format(
        c=c, finite=finite, zero=zero, max=sql.Literal(INT64_MAX), min=sql.Literal(INT64_MIN))


def rows_query(entity: Entity, where: sql.Composable) -> sql.Composable:
    """``COPY (SELECT id, facet keys, numbers, lowered texts ... ORDER BY id) TO STDOUT``."""
    numbers, texts = stored_columns(entity)
    columns = [sql.Identifier(ROW_ALIAS, "id")]
    columns += [sql.SQL("({})::text").format(facet.kind.key_sql()) for facet in entity.facets]
    columns += [_number_sql(entity, column) for column in numbers]
    columns += [sql.SQL("lower({})").format(sql.Identifier(ROW_ALIAS, column)) for column in texts]
    return sql.SQL("COPY (SELECT {columns} FROM {source} WHERE {where} ORDER BY {id}) TO STDOUT").format(
        columns=sql.SQL(", ").join(columns), source=entity.from_sql(), where=where,
        id=sql.Identifier(ROW_ALIAS, "id"))


def _unescape(value: bytes) -> bytes:
    if b"\\" not in value:
        return value
    out, i = bytearray(), 0
    while i < len(value):
        pair = value[i:i + 2]
        if pair in _UNESCAPES:
            out += _UNESCAPES[pair]
            i += 2
        else:
            out.append(value[i])
            i += 1
    return bytes(out)


class _Builder:
    """Columns accumulated block by block from COPY text rows."""

    def __init__(self, entity: Entity) -> None:
        self.entity = entity
        self.numbers, self.texts = stored_columns(entity)
        self.ids: list[np.ndarray] = []
        self.codes: list[list[np.ndarray]] = [[] for _ in entity.facets]
        self.key_codes: list[dict[bytes, int]] = [{} for _ in entity.facets]
        self.values: list[list[np.ndarray]] = [[] for _ in self.numbers]
        self.present: list[list[np.ndarray]] = [[] for _ in self.numbers]
        self.lowered: list[list[bytes]] = [[] for _ in self.texts]
        self.pending: list[bytes] = []
        self.partial = b""

    def write(self, data: bytes) -> None:
        lines = (self.partial + bytes(data)).split(b"\n")
        self.partial = lines.pop()
        self.pending.extend(lines)
        if len(self.pending) >= BLOCK_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        columns = list(zip(*(line.split(b"\t") for line in self.pending)))
        self.pending = []
        self.ids.append(np.array(columns[0], dtype=np.int64))
        offset = 1
        for i in range(len(self.entity.facets)):
            table = self.key_codes[i]
            self.codes[i].append(np.fromiter((table.setdefault(v, len(table)) for v in columns[offset + i]),
                                             dtype=np.uint32, count=len(columns[0])))
        offset += len(self.entity.facets)
        for i in range(len(self.numbers)):
            raw = columns[offset + i]
            present = np.fromiter((v != _NULL for v in raw), dtype=bool, count=len(raw))
            self.present[i].append(present)
            self.values[i].append(np.array([int(v) if v != _NULL else 0 for v in raw], dtype=np.int64))
        offset += len(self.numbers)
        for i in range(len(self.texts)):
            self.lowered[i].extend(b"" if v == _NULL else _unescape(v) for v in columns[offset + i])

    def index(self) -> EntityIndex:
        self._flush()
        ids = np.concatenate(self.ids) if self.ids else np.zeros(0, dtype=np.int64)
        facets = {}
        for facet, table, codes in zip(self.entity.facets, self.key_codes, self.codes):
            keys = tuple(None if key == _NULL else _unescape(key).decode() for key in table)
            all_codes = np.concatenate(codes) if codes else np.zeros(0, dtype=np.uint32)
            facets[facet.name] = CodedColumn.from_codes(narrow_codes(all_codes, len(keys)), keys)
        numbers = {}
        for column, values, present in zip(self.numbers, self.values, self.present):
            flags = np.concatenate(present) if present else np.zeros(0, dtype=bool)
            numbers[column] = NumberColumn(np.concatenate(values) if values else np.zeros(0, dtype=np.int64),
                                           None if flags.all() and column not in NULLABLE else flags)
        texts = {column: text_data(values) for column, values in zip(self.texts, self.lowered)}
        return EntityIndex(self.entity.name, ids, facets, numbers, texts)


# Columns that may hold NULL keep a present array even when no row is NULL now, so a later row can be.
NULLABLE = frozenset({"account_id", "probability", "close_date", "amount"})


def narrow_codes(codes: np.ndarray, key_count: int) -> np.ndarray:
    """``codes`` in the smallest unsigned dtype that holds ``key_count`` codes (memory of a searching process)."""
    dtype = np.uint8 if key_count <= 256 else np.uint16 if key_count <= 65_536 else np.uint32
    return codes.astype(dtype, copy=False)


def text_data(values: list[bytes]) -> TextData:
    lengths = np.fromiter((len(v) + 1 for v in values), dtype=np.int64, count=len(values))
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    lowered = b"\0".join(values) + (b"\0" if values else b"")
    return TextData(lowered, offsets)


def read_index(cur, entity: Entity, where: sql.Composable = sql.SQL("TRUE")) -> EntityIndex:
    """The rows of ``entity`` matching ``where`` (a condition on alias ``r``), as of the cursor's snapshot."""
    builder = _Builder(entity)
    cur.copy_expert(rows_query(entity, where), builder)
    if builder.partial:
        builder.pending.append(builder.partial)
    return builder.index()


def read_rows_of_ids(cur, entity: Entity, ids) -> EntityIndex:
    """The current rows of these ids (those that exist), as of the cursor's snapshot."""
    where = sql.SQL("{} = ANY({}::bigint[])").format(sql.Identifier(ROW_ALIAS, "id"),
                                                     sql.Literal([int(i) for i in ids]))
    return read_index(cur, entity, where)

