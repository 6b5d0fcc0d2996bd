"""The archive store interface (see crmtasks.audit.stores) and its errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from crmtasks.errors import CrmtasksError

TEMP_PREFIX = ".tmp-"
BLOCK = 1 << 20


class StoreError(CrmtasksError):
    """The archive store could not be reached or refused an operation (one line, no credentials)."""


class ObjectMissing(StoreError):
    """The named object is not in the store."""


def temporary_name(name: str) -> str:
    """The name an object is written under until it is published."""
    return TEMP_PREFIX + name


class ObjectWriter(Protocol):
    """An object being written to its temporary name (see ArchiveStore.writer)."""

    def write(self, data: bytes) -> int: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class ArchiveStore(Protocol):
    """Where archives are kept: a directory or an S3 bucket and prefix."""

    location: str

    def writer(self, name: str, on_part: Callable[[int], None] | None = None) -> ObjectWriter: ...

    def publish(self, name: str) -> None: ...

    def put(self, name: str, data: bytes) -> None: ...

    def get(self, name: str) -> bytes: ...

    def read_blocks(self, name: str) -> Iterator[bytes]: ...

    def size(self, name: str) -> int | None: ...

    def names(self, suffixes: tuple[str, ...] = ("",), *, temporary: bool = False) -> list[str]: ...

    def delete(self, name: str) -> None: ...
