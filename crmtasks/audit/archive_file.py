"""Archive files: audit rows streamed from PostgreSQL into a verified, compressed object in a store, and manifests.

Format. The data object is the output of ``COPY <table> (<columns>) TO
STDOUT`` (PostgreSQL's text format: one row per line, tab separated, ``\\N``
for NULL) compressed as one zstd frame (``.copy.zst``; archives written
before zstd are one gzip member, ``.copy.gz``, and still read: the
manifest's ``compression`` picks the codec, crmtasks.audit.codecs), so an
operator can load it back with nothing but ``zstdcat`` (or ``zcat``) and
``psql \\copy``. The text format depends on a few session settings (time
zone, date style, float digits), which are pinned by ``pin_copy_format`` for
both export and re-export, so the same rows always give the same bytes.

Checksums. ``rows_sha256`` is the SHA-256 of the uncompressed COPY text:
a checksum over the rows, in file order, independent of the compression.
``file_sha256`` is the SHA-256 of the object as stored. Both are computed in
C (hashlib, zstd and zlib release the GIL and work on 1 MiB blocks), so
checking them costs little next to the COPY itself; reading rows one by one
in Python would not reach the throughput target.

Durability. The data object is written under a temporary name, made
durable, read back from the store and verified, then published; the
manifest is written last, so a data object without a manifest is never
taken as an archive (crmtasks.audit.stores says what each store does).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from psycopg2 import sql

from crmtasks.audit import codecs, priority
from crmtasks.audit.codecs import Codec, CorruptStream, UnknownCompression
from crmtasks.audit.stores import ArchiveStore, ObjectMissing, StoreError
from crmtasks.errors import CrmtasksError

_BLOCK = 1 << 20
# Least niceness of the thread that hashes, compresses and stores the COPY stream (0 normal, 19 lowest);
# CRMTASKS_AUDIT_MAINTENANCE_NICENESS, when higher, is inherited from the maintenance thread.
ARCHIVE_THREAD_NICENESS = 10
# A paced COPY alternates running and resting within slices of this many seconds (CRMTASKS_ARCHIVE_DUTY_PERCENT).
PACING_SLICE_S = 0.1
MANIFEST_VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"


_MANIFEST_TEXT_FIELDS = ("month", "partition", "range_start", "range_end", "data_file", "file_sha256",
                         "rows_sha256", "compression", "format", "archived_at")
_MANIFEST_TYPES = {**{name: str for name in _MANIFEST_TEXT_FIELDS}, "columns": list, "row_count": int,
                   "file_bytes": int, "min_id": (int, type(None)), "max_id": (int, type(None)),
                   "min_occurred_at": (str, type(None)), "max_occurred_at": (str, type(None))}


class ArchiveCorrupt(CrmtasksError):
    """An archive file does not match what its manifest (or the database) says."""


@dataclasses.dataclass(frozen=True)
class StreamDigest:
    """What went through a COPY stream.

    Parameters:
      row_count(int): Lines, i.e. rows (COPY text escapes newlines inside values).
      rows_sha256(str): Hex SHA-256 of the uncompressed COPY text.
      file_sha256(str|None): Hex SHA-256 of the compressed bytes, when a file was written or read.
      file_bytes(int): Size of the compressed file (0 when none).
    """

    row_count: int
    rows_sha256: str
    file_sha256: str | None = None
    file_bytes: int = 0


@dataclasses.dataclass(frozen=True)
class Manifest:
    """The description of one archived month; its presence means "archive complete and verified".

    Parameters:
      month(str): ``YYYY-MM``.
      partition(str): The table the rows came from.
      range_start(str), range_end(str): The partition's bounds (ISO 8601, UTC) as read from the catalog.
      columns(list[str]): Column order of the COPY text.
      row_count(int): Rows in the file.
      min_id(int|None), max_id(int|None): id range of the rows.
      min_occurred_at(str|None), max_occurred_at(str|None): Time range of the rows (ISO 8601, UTC).
      data_file(str): Name of the data object, in the same store.
      file_bytes(int): Its size.
      file_sha256(str): SHA-256 of the file as stored.
      rows_sha256(str): SHA-256 of the uncompressed COPY text (the rows checksum).
      compression(str): e.g. ``zstd-3`` (``gzip-1`` for archives written before zstd).
      format(str): ``postgresql-copy-text``.
      archived_at(str): When the archive was verified (ISO 8601, UTC).
      version(int): Manifest format version.
    """

    month: str
    partition: str
    range_start: str
    range_end: str
    columns: list
    row_count: int
    min_id: int | None
    max_id: int | None
    min_occurred_at: str | None
    max_occurred_at: str | None
    data_file: str
    file_bytes: int
    file_sha256: str
    rows_sha256: str
    compression: str
    format: str
    archived_at: str
    version: int = MANIFEST_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        try:
            data = json.loads(text)
        except ValueError as error:
            raise ArchiveCorrupt(f"manifest is not valid: {error}") from None
        if not isinstance(data, dict):
            raise ArchiveCorrupt("manifest is not valid: not a JSON object")
        fields = {field.name for field in dataclasses.fields(cls)}
        missing = fields - set(data) - {"version"}
        if missing:
            raise ArchiveCorrupt(f"manifest lacks {', '.join(sorted(missing))}")
        # Wrong types would fail later, far from the file (a traceback in verify or restore).
        wrong = [name for name, kinds in _MANIFEST_TYPES.items()
                 if not isinstance(data[name], kinds) or isinstance(data[name], bool)]
        if wrong or not all(isinstance(column, str) for column in data["columns"]):
            raise ArchiveCorrupt(f"manifest is not valid: wrong type for {', '.join(wrong or ['columns'])}")
        return cls(**{key: value for key, value in data.items() if key in fields})


def pin_copy_format(cur) -> None:
    """Fix the session settings COPY text output depends on, for this transaction only (SET LOCAL)."""
    cur.execute("SET LOCAL TimeZone = 'UTC'")
    cur.execute("SET LOCAL DateStyle = 'ISO, YMD'")
    cur.execute("SET LOCAL IntervalStyle = 'postgres'")
    cur.execute("SET LOCAL extra_float_digits = 1")
    cur.execute("SET LOCAL bytea_output = 'hex'")
    cur.execute("SET LOCAL synchronize_seqscans = off")


def copy_out_statement(table: str, columns: list[str]) -> sql.Composed:
    """``COPY <table> (<columns>) TO STDOUT``, every name quoted.

    Rows come in physical order, not ``ORDER BY id``: sorting a month costs
    about a third of the export time, and the order is reproducible where it
    matters (a detached table is never written again, and a table freshly
    filled by COPY FROM is read back in load order; ``pin_copy_format``
    turns synchronized scans off so a scan always starts at block 0).
    """
    return sql.SQL("COPY {table} ({columns}) TO STDOUT").format(
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)), table=sql.Identifier(table))


class _DigestSink(io.RawIOBase):
    """Receives the COPY stream in 1 MiB blocks: counts lines here, and hashes and compresses them in a worker thread.

    The worker overlaps compression and storing with the COPY (zstd, zlib
    and hashlib release the GIL), so the COPY, which runs in the server, is
    the only serial step.

    Parameters:
      writer: Where the compressed bytes go (a store's ObjectWriter), or None to only count and hash.
      codec(Codec): The compression of the object.
      on_rows(callable|None): Called with the rows seen so far after each block (test pause points).
      duty_percent(int): Share of the time the COPY may run (100: no pacing; see _Pacer).
    """

    def __init__(self, writer=None, codec: Codec = codecs.WRITE_DEFAULT,
                 on_rows: Callable[[int], None] | None = None, duty_percent: int = 100) -> None:
        self._pacer = _Pacer(duty_percent)
        self._writer = writer
        self._compressor = codec.compressor() if writer is not None else None
        self._rows_hash = hashlib.sha256()
        self._file_hash = hashlib.sha256()
        self._on_rows = on_rows
        self._blocks: queue.Queue = queue.Queue(maxsize=8)
        self._failure: BaseException | None = None
        self._worker = threading.Thread(target=self._digest_blocks, name="audit-archive-digest", daemon=True)
        self._worker.start()
        self.rows = 0
        self.file_bytes = 0

    def writable(self) -> bool:
        return True

    def write(self, block) -> int:
        if self._failure is not None:
            raise self._failure
        data = block if isinstance(block, bytes) else bytes(block)
        self.rows += data.count(b"\n")
        self._blocks.put(data)
        if self._on_rows is not None:
            self._on_rows(self.rows)
        self._pacer.after_block()
        return len(data)

    def _digest_blocks(self) -> None:
        _yield_to_the_application()
        try:
            while (data := self._blocks.get()) is not None:
                self._rows_hash.update(data)
                if self._compressor is not None:
                    self._store(self._compressor.compress(data))
        except BaseException as error:  # noqa: BLE001 - handed to the writing thread
            self._failure = error
            while self._blocks.get() is not None:  # keep the producer from blocking
                pass

    def _store(self, data: bytes) -> None:
        if data:
            self._writer.write(data)
            self._file_hash.update(data)
            self.file_bytes += len(data)

    def finish(self) -> StreamDigest:
        """Wait for the worker, flush the compressor, and return the digest."""
        self._blocks.put(None)
        self._worker.join()
        if self._failure is not None:
            raise self._failure
        if self._compressor is None:
            return StreamDigest(self.rows, self._rows_hash.hexdigest())
        self._store(self._compressor.flush())
        return StreamDigest(self.rows, self._rows_hash.hexdigest(), self._file_hash.hexdigest(), self.file_bytes)

    def abandon(self) -> None:
        """Stop the worker after a failed COPY."""
        self._blocks.put(None)
        self._worker.join()


def _yield_to_the_application() -> None:
    """Give this (compressing) thread a lower CPU priority than the application's processes (Linux: per thread).

    On a small host the COPY's server process, this thread and the
    application's writers compete for the same cores; a writer that needs a
    core for its INSERT should get it first. The archive then only takes
    the CPU time nobody else wants (it is not in a hurry; writers are).
    """
    priority.lower_this_thread(ARCHIVE_THREAD_NICENESS)


class _Pacer:
    """Rests the thread reading the COPY so that it runs ``duty_percent`` of the time, in slices of PACING_SLICE_S.

    While it rests, nothing reads the connection: the server's process
    blocks once the socket's buffers are full, and the compressing thread
    soon runs out of blocks, so the whole archive rests and the writers have
    the cores. The rows, their order and the file are the same as unpaced;
    only the time changes (about 100 / duty_percent times the COPY's).
    """

    def __init__(self, duty_percent: int) -> None:
        self._share = duty_percent / 100
        self._since = time.perf_counter()

    def after_block(self) -> None:
        if self._share >= 1:
            return
        busy = time.perf_counter() - self._since
        if busy >= PACING_SLICE_S * self._share:
            time.sleep(busy * (1 - self._share) / self._share)
            self._since = time.perf_counter()


def copy_to_store(cur, statement: sql.Composable, writer, *, codec: Codec = codecs.WRITE_DEFAULT,
                  on_rows: Callable[[int], None] | None = None, duty_percent: int = 100) -> StreamDigest:
    """Run a ``COPY ... TO STDOUT`` into ``writer`` (a store's ObjectWriter), compressed; commit it; return its digest.

    ``duty_percent`` below 100 paces the COPY (CRMTASKS_ARCHIVE_DUTY_PERCENT).
    On any failure the writer is aborted (nothing is left under its name
    but what its store cleans up on the next write) and the error raised.
    """
    try:
        digest = _copy_into(cur, statement, _DigestSink(writer, codec, on_rows, duty_percent))
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return digest


def copy_to_digest(cur, statement: sql.Composable) -> StreamDigest:
    """Run a ``COPY ... TO STDOUT`` and return the row count and rows checksum, writing nothing."""
    return _copy_into(cur, statement, _DigestSink())


def _copy_into(cur, statement: sql.Composable, sink: _DigestSink) -> StreamDigest:
    """Stream a ``COPY ... TO STDOUT`` through ``sink`` in large blocks; the sink is abandoned on any error."""
    try:
        buffered = io.BufferedWriter(sink, buffer_size=_BLOCK)
        cur.copy_expert(statement, buffered)
        buffered.flush()
    except BaseException:
        sink.abandon()
        raise
    return sink.finish()


def read_digest(store: ArchiveStore, name: str, codec: Codec) -> StreamDigest:
    """Read an archive object back from its store: its SHA-256, and the row count and rows checksum of its content.

    Raises ArchiveCorrupt when the object is missing, cannot be read, or its
    compressed stream is damaged or truncated.
    """
    file_hash = hashlib.sha256()
    rows_hash = hashlib.sha256()
    rows = size = 0
    try:
        for text, block in _decoded(store.read_blocks(name), codec):
            size += len(block)
            file_hash.update(block)
            rows_hash.update(text)
            rows += text.count(b"\n")
    except CorruptStream as error:
        raise ArchiveCorrupt(f"{name}: {error}") from None
    except ObjectMissing:
        raise ArchiveCorrupt(f"{name} is missing from {store.location}") from None
    except StoreError as error:
        raise ArchiveCorrupt(f"{name} cannot be read: {error}") from None
    return StreamDigest(rows, rows_hash.hexdigest(), file_hash.hexdigest(), size)


def _decoded(blocks: Iterable[bytes], codec: Codec) -> Iterator[tuple[bytes, bytes]]:
    """(uncompressed text, compressed block) pairs; the last pair has the decoder's tail and no block."""
    decoder = codec.decoder()
    for block in blocks:
        yield decoder.decompress(block), block
    yield decoder.finish(), b""


class CopyTextReader(io.RawIOBase):
    """A readable file over an archive's uncompressed COPY text, for ``cursor.copy_expert(... FROM STDIN)``."""

    def __init__(self, store: ArchiveStore, name: str, codec: Codec) -> None:
        self._blocks = (text for text, _ in _decoded(store.read_blocks(name), codec) if text)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while not self._pending:
            try:
                self._pending = next(self._blocks)
            except StopIteration:
                return b""
        if size is None or size < 0:
            size = len(self._pending)
        data, self._pending = self._pending[:size], self._pending[size:]
        return data


def manifest_codec(manifest: Manifest) -> Codec:
    """The codec that reads ``manifest``'s data object (ArchiveCorrupt when this version knows none)."""
    try:
        return codecs.for_manifest(manifest.compression)
    except UnknownCompression as error:
        raise ArchiveCorrupt(f"{manifest.month}: {error}") from None


def verify_against_manifest(store: ArchiveStore, manifest: Manifest) -> StreamDigest:
    """Re-read the manifest's data object from the store and check size, SHA-256, row count and rows checksum.

    Returns the digest; raises ArchiveCorrupt on the first difference.
    """
    if "/" in manifest.data_file or manifest.data_file in ("", ".", ".."):
        raise ArchiveCorrupt(f"manifest of {manifest.month} names a data file outside the archive store")
    digest = read_digest(store, manifest.data_file, manifest_codec(manifest))
    problems = []
    if digest.file_bytes != manifest.file_bytes:
        problems.append(f"size {digest.file_bytes} != {manifest.file_bytes}")
    if digest.file_sha256 != manifest.file_sha256:
        problems.append("file SHA-256 differs")
    if digest.row_count != manifest.row_count:
        problems.append(f"row count {digest.row_count} != {manifest.row_count}")
    if digest.rows_sha256 != manifest.rows_sha256:
        problems.append("rows checksum differs")
    if problems:
        raise ArchiveCorrupt(f"{manifest.month}: {manifest.data_file}: {'; '.join(problems)}")
    return digest


def read_manifest(store: ArchiveStore, name: str) -> Manifest:
    """The manifest ``name`` in ``store``; ArchiveCorrupt (one line) when it is missing, unreadable or not valid."""
    try:
        text = store.get(name).decode()
    except ObjectMissing:
        raise ArchiveCorrupt(f"manifest {name} is missing from {store.location}") from None
    except StoreError as error:
        raise ArchiveCorrupt(f"manifest {name} cannot be read: {error}") from None
    except UnicodeDecodeError:
        raise ArchiveCorrupt(f"manifest {name} is not UTF-8 text") from None
    return Manifest.from_json(text)
