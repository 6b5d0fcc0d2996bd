"""Compression of archive data files: zstd for new archives, gzip still read (and writable) for older ones.

A codec is chosen for reading by the manifest's ``compression`` field
(``zstd-3``, ``gzip-1``), so archives written before zstd keep verifying and
restoring; the data file's suffix (``.copy.zst``, ``.copy.gz``) says the same
to an operator, who can read either with ``zstdcat``/``zcat`` and ``psql
\\copy``. Both libraries compress and decompress in C with the GIL released,
so the archive's digest thread overlaps them with the COPY.
"""

from __future__ import annotations

import dataclasses
import zlib

import zstandard

from crmtasks.errors import CrmtasksError

_GZIP_WBITS = 16 + zlib.MAX_WBITS
# zstd level 1: on COPY text of audit rows it compressed as small as level 3 (and ~20% smaller
# than gzip level 1) in less time than either (a probe on 400k rows; scripts/bench_audit.py
# --compression zstd|gzip --level N compares whole archive runs); decompression is faster still.
ZSTD_LEVEL = 1
GZIP_LEVEL = 1


class UnknownCompression(CrmtasksError):
    """A manifest names a compression this version cannot read."""


class CorruptStream(CrmtasksError):
    """A compressed stream is damaged, truncated or followed by extra bytes."""


@dataclasses.dataclass(frozen=True)
class Codec:
    """One compression format of archive data files.

    Parameters:
      name(str): ``zstd`` or ``gzip``.
      level(int): Compression level used when writing.
      suffix(str): Data file name suffix (``.copy.zst``, ``.copy.gz``).
    """

    name: str
    level: int
    suffix: str

    @property
    def label(self) -> str:
        """The manifest's ``compression`` value, e.g. ``zstd-3``."""
        return f"{self.name}-{self.level}"

    def compressor(self):
        """An object with ``compress(bytes) -> bytes`` and ``flush() -> bytes`` producing one frame/member."""
        if self.name == "zstd":
            return zstandard.ZstdCompressor(level=self.level, write_checksum=True).compressobj()
        return zlib.compressobj(self.level, zlib.DEFLATED, _GZIP_WBITS)

    def decoder(self) -> StreamDecoder:
        return StreamDecoder(self.name)


class StreamDecoder:
    """Decompresses one frame (zstd) or member (gzip) fed in blocks; ``finish`` says whether it was whole."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._zlib = zlib.decompressobj(_GZIP_WBITS) if name == "gzip" else None
        self._zstd = zstandard.ZstdDecompressor().decompressobj() if name == "zstd" else None
        self._ended = False

    def decompress(self, block: bytes) -> bytes:
        if self._ended:
            raise CorruptStream(f"data after the end of the {self._name} stream")
        try:
            if self._zlib is not None:
                text = self._zlib.decompress(block)
                self._ended = self._zlib.eof
                extra = self._zlib.unused_data
            else:
                text = self._zstd.decompress(block)
                self._ended = self._zstd.eof
                extra = self._zstd.unused_data
        except (zlib.error, zstandard.ZstdError) as error:
            raise CorruptStream(f"not a valid {self._name} stream ({error})") from None
        if extra:
            raise CorruptStream(f"data after the end of the {self._name} stream")
        return text

    def finish(self) -> bytes:
        """The last bytes of text; CorruptStream when the stream ended early."""
        tail = b""
        if self._zlib is not None:
            try:
                tail = self._zlib.flush()
            except zlib.error as error:
                raise CorruptStream(f"not a valid gzip stream ({error})") from None
        if not self._ended:
            raise CorruptStream(f"{self._name} stream is truncated")
        return tail


ZSTD = Codec("zstd", ZSTD_LEVEL, ".copy.zst")
GZIP = Codec("gzip", GZIP_LEVEL, ".copy.gz")
WRITE_DEFAULT = ZSTD
DATA_SUFFIXES = (ZSTD.suffix, GZIP.suffix)


def codec(name: str, level: int | None = None) -> Codec:
    """The codec named ``zstd`` or ``gzip`` (at ``level``, default its own)."""
    base = {"zstd": ZSTD, "gzip": GZIP}.get(name)
    if base is None:
        raise UnknownCompression(f"compression {name!r} is not one of zstd, gzip")
    return base if level is None else dataclasses.replace(base, level=level)


def for_manifest(compression: str) -> Codec:
    """The codec that reads data described as ``compression`` (``zstd-3``, ``gzip-1``, ...)."""
    name, _, level = compression.partition("-")
    if not level.isdigit():
        raise UnknownCompression(f"compression {compression!r} is not <name>-<level>")
    return codec(name, int(level))
