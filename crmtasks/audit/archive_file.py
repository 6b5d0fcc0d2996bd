"""Archive files: audit rows streamed from PostgreSQL into a verified gzip file, and their manifests.

Format. The data file is the output of ``COPY <table> (<columns>) TO
STDOUT`` (PostgreSQL's text format: one row per line, tab
separated, ``\\N`` for NULL) compressed as one gzip member, so an operator
can load it back with nothing but ``zcat`` and ``psql \\copy``. The text
format depends on a few session settings (time zone, date style, float
digits), which are pinned by ``pin_copy_format`` for both export and
re-export, so the same rows always give the same bytes.

Checksums. ``rows_sha256`` is the SHA-256 of the uncompressed COPY text:
a checksum over the rows, in file order, independent of the compression.
``file_sha256`` is the SHA-256 of the file as stored. Both are computed in
C (hashlib and zlib release the GIL and work on 1 MiB blocks), so checking
them costs little next to the COPY itself; reading rows one by one in
Python would not reach the throughput target.

Durability. Data and manifest are each written to a temporary name,
fsynced, renamed into place, and the directory is fsynced. The manifest is
written last, after the data file was read back from disk and verified: a
data file without a manifest is never taken as an archive.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import queue
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

from psycopg2 import sql

from crmtasks.errors import CrmtasksError

# gzip level 1: zlib compresses audit rows at ~240 MB/s vs ~95 MB/s at level 6, for a file
# ~30% larger (measured; scripts/bench_audit.py --level compares whole archive runs).
GZIP_LEVEL = 1
_BLOCK = 1 << 20
_GZIP_WBITS = 16 + zlib.MAX_WBITS
MANIFEST_VERSION = 1
DATA_SUFFIX = ".copy.gz"
MANIFEST_SUFFIX = ".manifest.json"
TEMP_PREFIX = ".tmp-"


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
      data_file(str): File name of the data, in the same directory.
      file_bytes(int): Its size.
      file_sha256(str): SHA-256 of the file as stored.
      rows_sha256(str): SHA-256 of the uncompressed COPY text (the rows checksum).
      compression(str): e.g. ``gzip-1``.
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
    """Receives the COPY stream in 1 MiB blocks: counts lines here, and hashes and gzips them in a worker thread.

    The worker overlaps compression with the COPY (zlib and hashlib release
    the GIL): COPY + gzip of 300k rows went from 410-490k to 500-550k rows/s
    on an idle 2-core machine.
    """

    def __init__(self, file=None, level: int = GZIP_LEVEL, on_rows: Callable[[int], None] | None = None) -> None:
        self._file = file
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS) if file is not None else None
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
        return len(data)

    def _digest_blocks(self) -> None:
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
            self._file.write(data)
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


def copy_to_file(cur, statement: sql.Composable, path: Path, *, level: int = GZIP_LEVEL,
                 on_rows: Callable[[int], None] | None = None) -> StreamDigest:
    """Run a ``COPY ... TO STDOUT`` into a new gzip file at ``path``, fsynced; return its digest.

    ``path`` is created exclusively (a temporary name is expected); the file
    is flushed and fsynced before returning, and its pages are dropped from
    the page cache so the read-back that follows reads the disk.
    """
    with open(path, "xb") as raw_file:
        digest = _copy_into(cur, statement, _DigestSink(raw_file, level, on_rows))
        raw_file.flush()
        os.fsync(raw_file.fileno())
        _drop_cached_pages(raw_file.fileno())
    return digest


def copy_to_digest(cur, statement: sql.Composable) -> StreamDigest:
    """Run a ``COPY ... TO STDOUT`` and return the row count and rows checksum, writing nothing."""
    return _copy_into(cur, statement, _DigestSink())


def _copy_into(cur, statement: sql.Composable, sink: "_DigestSink") -> StreamDigest:
    """Stream a ``COPY ... TO STDOUT`` through ``sink`` in large blocks; the sink is abandoned on any error."""
    try:
        buffered = io.BufferedWriter(sink, buffer_size=_BLOCK)
        cur.copy_expert(statement, buffered)
        buffered.flush()
    except BaseException:
        sink.abandon()
        raise
    return sink.finish()


def read_digest(path: Path) -> StreamDigest:
    """Read an archive file back from disk: its SHA-256, and the row count and rows checksum of its content.

    Raises ArchiveCorrupt when the gzip stream is damaged or truncated.
    """
    file_hash = hashlib.sha256()
    rows_hash = hashlib.sha256()
    rows = 0
    size = 0
    decompressor = zlib.decompressobj(_GZIP_WBITS)
    try:
        with open(path, "rb") as file:
            while block := file.read(_BLOCK):
                size += len(block)
                file_hash.update(block)
                if decompressor.eof:
                    raise ArchiveCorrupt(f"{path.name}: data after the end of the gzip stream")
                text = decompressor.decompress(block)
                rows_hash.update(text)
                rows += text.count(b"\n")
            text = decompressor.flush()
    except zlib.error as error:
        raise ArchiveCorrupt(f"{path.name}: not a valid gzip stream ({error})") from None
    except OSError as error:
        raise ArchiveCorrupt(f"{path.name} cannot be read: {error.strerror or error}") from None
    rows_hash.update(text)
    rows += text.count(b"\n")
    if not decompressor.eof:
        raise ArchiveCorrupt(f"{path.name}: gzip stream is truncated")
    if decompressor.unused_data:
        raise ArchiveCorrupt(f"{path.name}: data after the end of the gzip stream")
    return StreamDigest(rows, rows_hash.hexdigest(), file_hash.hexdigest(), size)


def iter_copy_text(path: Path):
    """Yield the uncompressed COPY text of an archive file in blocks (for COPY ... FROM STDIN)."""
    decompressor = zlib.decompressobj(_GZIP_WBITS)
    with open(path, "rb") as file:
        while block := file.read(_BLOCK):
            text = decompressor.decompress(block)
            if text:
                yield text
    tail = decompressor.flush()
    if tail:
        yield tail


class CopyTextReader(io.RawIOBase):
    """A readable file over an archive's uncompressed COPY text, for ``cursor.copy_expert(... FROM STDIN)``."""

    def __init__(self, path: Path) -> None:
        self._blocks = iter_copy_text(path)
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


def verify_against_manifest(directory: Path, manifest: Manifest) -> StreamDigest:
    """Re-read the manifest's data file and check size, file SHA-256, row count and rows checksum.

    Returns the digest; raises ArchiveCorrupt on the first difference.
    """
    path = directory / manifest.data_file
    if Path(manifest.data_file).name != manifest.data_file:
        raise ArchiveCorrupt(f"manifest of {manifest.month} names a data file outside the archive directory")
    if not os.path.lexists(path):
        raise ArchiveCorrupt(f"{manifest.month}: data file {manifest.data_file} is missing")
    digest = read_digest(path)
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


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably: temp file, fsync, rename, fsync the directory."""
    temp = path.with_name(TEMP_PREFIX + path.name)
    temp.unlink(missing_ok=True)
    with open(temp, "xb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temp, path)
    fsync_directory(path.parent)


def publish(temp: Path, final: Path) -> None:
    """Rename an fsynced temporary file to its final name and fsync the directory (atomic on POSIX)."""
    os.replace(temp, final)
    fsync_directory(final.parent)


def fsync_directory(directory: Path) -> None:
    """fsync a directory so the names created or renamed in it survive a power loss."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_manifest(path: Path) -> Manifest:
    """The manifest at ``path``; ArchiveCorrupt (one line) when it is missing, unreadable or not valid."""
    try:
        text = path.read_bytes().decode()
    except FileNotFoundError:
        raise ArchiveCorrupt(f"manifest {path.name} is missing from {path.parent}") from None
    except OSError as error:
        raise ArchiveCorrupt(f"manifest {path.name} cannot be read: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ArchiveCorrupt(f"manifest {path.name} is not UTF-8 text") from None
    return Manifest.from_json(text)


def _drop_cached_pages(fd: int) -> None:
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
