"""Archives in a local (or mounted) directory: ``file:///dir``, crmtasks' default store.

Durability: an object is written to its temporary name, fsynced, renamed
into place, and the directory is fsynced; a manifest is written the same
way in one go. The written file's pages are dropped from the page cache so
the read-back that verifies it reads the disk.

Sharing the disk with PostgreSQL: the data file is made durable as it is
written, SYNC_EVERY_BYTES at a time (fdatasync), not in one fsync at the
end. One fsync of a month's archive (tens of MiB) queues all of it at the
disk at once, and every commit of the application, whose WAL flush waits
behind it, stalls for as long; a MiB at a time, a commit waits for a MiB
at most. The end result on disk, and the kill -9 safety (the file is only
published after its final fsync), are the same.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from crmtasks.audit.stores.base import (
    BLOCK,
    TEMP_PREFIX,
    ObjectMissing,
    StoreError,
    temporary_name,
)


# The data file is flushed to disk every this many bytes as it is written (see the module's docstring).
SYNC_EVERY_BYTES = 1 << 20


class FileWriter:
    """A file being written under its temporary name, flushed to disk as it grows; ``commit`` fsyncs it.

    Parameters:
      path(Path): The temporary file (created exclusively; a leftover is removed first).
      on_part(callable|None): Called with the number of blocks written so far, after each write.
    """

    def __init__(self, path: Path, on_part: Callable[[int], None] | None = None) -> None:
        path.unlink(missing_ok=True)  # a half-written file of a killed run
        self._path = path
        self._file = open(path, "xb")
        self._on_part = on_part
        self._parts = 0
        self._written = 0
        self.synced_bytes = 0  # how much of the file is known to be on disk

    def write(self, data: bytes) -> int:
        self._file.write(data)
        self._written += len(data)
        if self._written - self.synced_bytes >= SYNC_EVERY_BYTES:
            self._file.flush()
            os.fdatasync(self._file.fileno())
            self.synced_bytes = self._written
        self._parts += 1
        if self._on_part is not None:
            self._on_part(self._parts)
        return len(data)

    def commit(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self.synced_bytes = self._written
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self._file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        self._file.close()

    def abort(self) -> None:
        self._file.close()
        self._path.unlink(missing_ok=True)


class FileStore:
    """Archive objects as files in one directory (created on first write).

    Parameters:
      directory(Path): Where the files go.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.location = str(directory)

    def _path(self, name: str) -> Path:
        if Path(name).name != name or name in ("", ".", ".."):
            raise StoreError(f"{name!r} is not a plain file name in {self.location}")
        return self.directory / name

    def writer(self, name: str, on_part: Callable[[int], None] | None = None) -> FileWriter:
        self.directory.mkdir(parents=True, exist_ok=True)
        return FileWriter(self._path(temporary_name(name)), on_part)

    def publish(self, name: str) -> None:
        os.replace(self._path(temporary_name(name)), self._path(name))
        fsync_directory(self.directory)

    def put(self, name: str, data: bytes) -> None:
        writer = self.writer(name)
        try:
            writer.write(data)
            writer.commit()
        except BaseException:
            writer.abort()
            raise
        self.publish(name)

    def get(self, name: str) -> bytes:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            raise ObjectMissing(f"{name} is missing from {self.location}") from None
        except OSError as error:
            raise StoreError(f"{name} in {self.location} cannot be read: {error.strerror or error}") from None

    def read_blocks(self, name: str) -> Iterator[bytes]:
        path = self._path(name)
        try:
            with open(path, "rb") as file:
                while block := file.read(BLOCK):
                    yield block
        except FileNotFoundError:
            raise ObjectMissing(f"{name} is missing from {self.location}") from None
        except OSError as error:
            raise StoreError(f"{name} in {self.location} cannot be read: {error.strerror or error}") from None

    def size(self, name: str) -> int | None:
        """Size of a regular file in bytes; None when it is missing, unreadable or not a file."""
        try:
            path = self._path(name)
            return path.stat().st_size if path.is_file() else None
        except (OSError, StoreError):
            return None

    def names(self, suffixes: tuple[str, ...] = ("",), *, temporary: bool = False) -> list[str]:
        """Published (or, with ``temporary``, temporary) file names ending in one of ``suffixes``; [] when the
        directory cannot be listed."""
        try:
            found = [path.name for path in self.directory.iterdir()]
        except OSError:
            return []
        return sorted(name for name in found
                      if name.endswith(suffixes) and name.startswith(TEMP_PREFIX) == temporary)

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)


def fsync_directory(directory: Path) -> None:
    """fsync a directory so the names created or renamed in it survive a power loss."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
