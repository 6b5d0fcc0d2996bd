"""Reading an entity's rows from PostgreSQL into an ``EntityIndex`` (a whole table, or the rows of some ids).

Rows are read in id ranges (``BATCH_IDS`` ids at a time, so memory stays at
one batch of rows plus the arrays being built), each with two ``COPY (SELECT
...) TO STDOUT`` in the caller's transaction (so its snapshot), in id order:
  - a binary COPY of every integer: the id, the integer facet keys (owner,
    quarter, amount band) and the number columns, converted to whole units by
    PostgreSQL (days, cents), each with a NULL flag; timestamps are sent as
    they are (a binary timestamptz is int64 microseconds since 2000-01-01) and
    shifted to Unix microseconds in numpy, since numeric ``extract(epoch ...)``
    was most of the server's work. Every field is 8 bytes, so a batch is one
    numpy structured array, parsed in C;
  - a text COPY of the text facet keys and of the text columns lowered by
    PostgreSQL's ``lower()`` (what ``ILIKE`` compares), split in one C call.
Facet keys are computed by the same SQL expressions live search groups by
(``FacetKind.key_sql``), so the index and live counts agree by construction.
"""

from __future__ import annotations

import io

import numpy as np
from psycopg2 import sql

from crmtasks.search.facets import Entity
from crmtasks.search.index import INT64_MAX, INT64_MIN, CodedColumn, EntityIndex, NumberColumn, TextData
from crmtasks.search.kinds import ROW_ALIAS, Amount, Date, TextColumn, Timestamp, UserColumn

# Ids per batch: enough that per-batch costs vanish, few enough to bound the memory of a batch.
BATCH_IDS = 262_144
_NULL = b"\\N"
_UNESCAPES = {b"\\\\": b"\\", b"\\t": b"\t", b"\\n": b"\n", b"\\r": b"\r", b"\\b": b"\b", b"\\f": b"\f",
              b"\\v": b"\v"}
_BINARY_HEADER = 19  # PGCOPY signature (11), flags (4), header extension length (4)


def stored_columns(entity: Entity) -> tuple[list[str], list[str]]:
    """``(numbers, texts)``: the entity's columns kept as NumberColumn and as TextData (the others are facets)."""
    facet_columns = {facet.kind.column for facet in entity.facets
                     if isinstance(facet.kind, (TextColumn, UserColumn)) and facet.kind.alias == ROW_ALIAS}
    texts = list(entity.text_columns)
    numbers = [column for column in entity.columns
               if column != "id" and column not in texts and column not in facet_columns]
    return numbers, texts


def _number_sql(entity: Entity, column: str) -> sql.Composable:
    """The column in whole units (an int8 expression, or a timestamptz sent as is): NULL exactly when it is."""
    c = sql.Identifier(ROW_ALIAS, column)
    kind = entity.ranges.get(column)
    if isinstance(kind, Timestamp):
        return c  # sent as is (binary: int64 microseconds since 2000), made Unix microseconds by _unix_microseconds
    if isinstance(kind, Date):
        finite, zero = sql.SQL("({c} - DATE '1970-01-01')::bigint").format(c=c), sql.SQL("DATE '1970-01-01'")
    elif isinstance(kind, Amount):
        return sql.SQL("({c} * 100)::bigint").format(c=c)
    else:
        return sql.SQL("{c}::bigint").format(c=c)
    return sql.SQL("CASE WHEN {c} IS NULL THEN NULL WHEN isfinite({c}) THEN {finite} "
                   "WHEN {c} > {zero} THEN ({max})::bigint ELSE ({min})::bigint END").format(
        c=c, finite=finite, zero=zero, max=sql.Literal(INT64_MAX), min=sql.Literal(INT64_MIN))


# Microseconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch of a binary timestamptz.
_POSTGRES_EPOCH_US = 946_684_800_000_000


def _unix_microseconds(sent: np.ndarray) -> np.ndarray:
    """Binary-COPY timestamptz values (int64 microseconds since 2000-01-01 UTC; -infinity and infinity are
    the int64 extremes) as microseconds since 1970-01-01, what ``extract(epoch FROM c) * 1000000`` gives.

    Why not that SQL: ``extract`` returns numeric, and numeric arithmetic twice per row and column (the
    value and its NULL flag) was most of the server's time of a full build's integer ``COPY``.
    """
    finite = (sent != INT64_MIN) & (sent != INT64_MAX)
    if np.any(sent[finite] > INT64_MAX - _POSTGRES_EPOCH_US):
        raise ValueError("a timestamp after the year 294247 has no bigint microseconds since 1970")
    return sent + np.where(finite, _POSTGRES_EPOCH_US, 0)  # the infinities stay the int64 extremes


def _facet_split(entity: Entity) -> tuple[list, list]:
    """``(integer facets, text facets)``: facets whose key is an integer expression, and the others."""
    text = [facet for facet in entity.facets if isinstance(facet.kind, TextColumn)]
    return [facet for facet in entity.facets if facet not in text], text


def _integers_query(entity: Entity, where: sql.Composable) -> sql.Composable:
    numbers, _ = stored_columns(entity)
    integer_facets, _ = _facet_split(entity)
    expressions = [facet.kind.key_sql() for facet in integer_facets] + [_number_sql(entity, c) for c in numbers]
    columns = [sql.SQL("{}::int8").format(sql.Identifier(ROW_ALIAS, "id"))]
    timestamps = {column for column in numbers if isinstance(entity.ranges.get(column), Timestamp)}
    for column, expression in zip([None] * len(integer_facets) + numbers, expressions):
        # every field 8 bytes: a NULL timestamptz is sent as any one (its flag says NULL)
        value = (sql.SQL("coalesce({e}, 'epoch'::timestamptz)") if column in timestamps
                 else sql.SQL("coalesce(({e})::int8, 0)"))
        # a number column's value is NULL exactly when the column is: its flag tests the column, so the
        # expression (numeric for an amount, a CASE for a date) is computed once per row, not twice
        nullable = expression if column is None else sql.Identifier(ROW_ALIAS, column)
        columns.append(sql.SQL("{value}, (({e}) IS NULL)::int::int8").format(value=value.format(e=expression),
                                                                          e=nullable))
    return sql.SQL("COPY (SELECT {columns} FROM {source} WHERE {where} ORDER BY {id}) TO STDOUT (FORMAT binary)").format(
        columns=sql.SQL(", ").join(columns), source=entity.from_sql(), where=where, id=sql.Identifier(ROW_ALIAS, "id"))


def _texts_query(entity: Entity, where: sql.Composable) -> sql.Composable | None:
    _, texts = stored_columns(entity)
    _, text_facets = _facet_split(entity)
    columns = [facet.kind.key_sql() for facet in text_facets]
    # NULL as '' (it matches no q of 3+ characters either), so no NULL marker needs handling in Python
    columns += [sql.SQL("coalesce(lower({}), '')").format(sql.Identifier(ROW_ALIAS, column)) for column in texts]
    if not columns:
        return None
    return sql.SQL("COPY (SELECT {columns} FROM {source} WHERE {where} ORDER BY {id}) TO STDOUT").format(
        columns=sql.SQL(", ").join(columns), source=entity.from_sql(), where=where, id=sql.Identifier(ROW_ALIAS, "id"))


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
    """Columns accumulated batch by batch; facet codes are global across batches."""

    def __init__(self, entity: Entity) -> None:
        self.entity = entity
        self.numbers, self.texts = stored_columns(entity)
        self.integer_facets, self.text_facets = _facet_split(entity)
        self.ids: list[np.ndarray] = []
        self.codes: dict[str, list[np.ndarray]] = {facet.name: [] for facet in entity.facets}
        self.key_codes: dict[str, dict] = {facet.name: {} for facet in entity.facets}
        self.values: dict[str, list[np.ndarray]] = {column: [] for column in self.numbers}
        self.present: dict[str, list[np.ndarray]] = {column: [] for column in self.numbers}
        self.blobs: dict[str, list[bytes]] = {column: [] for column in self.texts}
        self.lengths: dict[str, list[np.ndarray]] = {column: [] for column in self.texts}

    def _code(self, name: str, keys: np.ndarray | list, distinct) -> np.ndarray:
        table = self.key_codes[name]
        local = {key: table.setdefault(key, len(table)) for key in distinct}
        return np.fromiter(map(local.__getitem__, keys), dtype=np.uint32, count=len(keys))

    def add_integers(self, data: bytes) -> int:
        fields = 1 + 2 * (len(self.integer_facets) + len(self.numbers))
        dtype = np.dtype([("count", ">i2")] + [(f"{kind}{i}", ">i4" if kind == "length" else ">i8")
                                                for i in range(fields) for kind in ("length", "value")])
        rows = np.frombuffer(data[_BINARY_HEADER:len(data) - 2], dtype=dtype)
        self.ids.append(rows["value0"].astype(np.int64))
        columns = [(rows[f"value{1 + 2 * i}"].astype(np.int64), rows[f"value{2 + 2 * i}"] == 0)
                   for i in range(fields // 2)]
        for facet, (values, present) in zip(self.integer_facets, columns):
            keys = np.where(present, values, 0)
            distinct, inverse = np.unique(keys, return_inverse=True)
            # NULL is a bucket of its own: a key of its own, whatever the sentinel value
            names = [str(int(v)) for v in distinct]
            codes = self._code(facet.name, names, names)[inverse.reshape(-1)]
            if not present.all():
                codes[~present] = self._code(facet.name, [None], [None])[0]
            self.codes[facet.name].append(codes)
        for column, (values, present) in zip(self.numbers, columns[len(self.integer_facets):]):
            if isinstance(self.entity.ranges.get(column), Timestamp):
                values = _unix_microseconds(values)
            self.values[column].append(np.where(present, values, 0))
            self.present[column].append(present)
        return len(rows)

    def add_texts(self, data: bytes, rows: int) -> None:
        width = len(self.text_facets) + len(self.texts)
        fields = data.replace(b"\n", b"\t").split(b"\t")[:rows * width] if rows else []
        for i, facet in enumerate(self.text_facets):
            column = fields[i::width]
            distinct = list(dict.fromkeys(column))
            keys = [None if key == _NULL else _unescape(key).decode() for key in distinct]
            local = dict(zip(distinct, self._code(facet.name, keys, keys)))
            self.codes[facet.name].append(np.fromiter(map(local.__getitem__, column), dtype=np.uint32, count=rows))
        for i, name in enumerate(self.texts):
            column = fields[len(self.text_facets) + i::width]
            blob = b"\0".join(column) + (b"\0" if column else b"")
            if b"\\" in blob:  # COPY escaped a backslash, tab or newline somewhere: undo it value by value
                column = [_unescape(value) if b"\\" in value else value for value in column]
                blob = b"\0".join(column) + b"\0"
            self.blobs[name].append(blob)
            self.lengths[name].append(np.fromiter(map(len, column), dtype=np.int64, count=rows) + 1)

    def index(self) -> EntityIndex:
        ids = np.concatenate(self.ids) if self.ids else np.zeros(0, dtype=np.int64)
        facets = {}
        for facet in self.entity.facets:
            table = self.key_codes[facet.name]
            codes = np.concatenate(self.codes[facet.name]) if self.codes[facet.name] else np.zeros(0, np.uint32)
            facets[facet.name] = CodedColumn.from_codes(narrow_codes(codes, len(table)), tuple(table))
        numbers = {}
        for column in self.numbers:
            flags = np.concatenate(self.present[column]) if self.present[column] else np.zeros(0, dtype=bool)
            values = np.concatenate(self.values[column]) if self.values[column] else np.zeros(0, dtype=np.int64)
            numbers[column] = NumberColumn(values, None if flags.all() and column not in NULLABLE else flags)
        texts = {}
        for column in self.texts:
            lengths = np.concatenate(self.lengths[column]) if self.lengths[column] else np.zeros(0, np.int64)
            texts[column] = TextData(b"".join(self.blobs[column]), offsets_of(lengths))
        return EntityIndex(self.entity.name, ids, facets, numbers, texts)


# Columns that may hold NULL keep a present array even when no row is NULL now, so a later row can be.
NULLABLE = frozenset({"account_id", "probability", "close_date", "amount"})


def narrow_codes(codes: np.ndarray, key_count: int) -> np.ndarray:
    """``codes`` in the smallest unsigned dtype that holds ``key_count`` codes (memory of a searching process)."""
    dtype = np.uint8 if key_count <= 256 else np.uint16 if key_count <= 65_536 else np.uint32
    return codes.astype(dtype, copy=False)


def offsets_of(lengths: np.ndarray) -> np.ndarray:
    """Row starts (and the end) from row lengths: uint32 while the text fits in 4 GiB (half the memory), else int64."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets.astype(np.uint32) if offsets[-1] < 2**32 else offsets


def text_data(values: list[bytes]) -> TextData:
    lengths = np.fromiter((len(v) + 1 for v in values), dtype=np.int64, count=len(values))
    lowered = b"\0".join(values) + (b"\0" if values else b"")
    return TextData(lowered, offsets_of(lengths))


def _read_batch(cur, builder: _Builder, where: sql.Composable) -> None:
    integers = io.BytesIO()  # its write() is C: COPY calls it once per row
    cur.copy_expert(_integers_query(builder.entity, where), integers)
    rows = builder.add_integers(integers.getvalue())
    query = _texts_query(builder.entity, where)
    if query is not None:
        texts = io.BytesIO()
        cur.copy_expert(query, texts)
        builder.add_texts(texts.getvalue(), rows)


def read_index(cur, entity: Entity) -> EntityIndex:
    """Every row of ``entity``, as of the cursor's snapshot, read in id ranges."""
    builder = _Builder(entity)
    cur.execute(sql.SQL("SELECT min(id), max(id) FROM {}").format(sql.Identifier(entity.table)))
    low, high = cur.fetchone()
    row_id = sql.Identifier(ROW_ALIAS, "id")
    for start in range(low or 0, (high or -1) + 1, BATCH_IDS):
        _read_batch(cur, builder, sql.SQL("{id} >= {start} AND {id} < {end}").format(
            id=row_id, start=sql.Literal(start), end=sql.Literal(start + BATCH_IDS)))
    return builder.index()


def read_rows_of_ids(cur, entity: Entity, ids) -> EntityIndex:
    """The current rows of these ids (those that exist), as of the cursor's snapshot."""
    builder = _Builder(entity)
    _read_batch(cur, builder, sql.SQL("{} = ANY({}::bigint[])").format(
        sql.Identifier(ROW_ALIAS, "id"), sql.Literal([int(i) for i in ids])))
    return builder.index()
