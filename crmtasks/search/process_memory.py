"""Giving back to the system the memory a load freed, so a searching process's resident size is what it holds.

Loading a generation decompresses its parts and builds arrays from them; the
temporary buffers are freed, but glibc's allocator keeps freed heap pages for
reuse, so the process stays as large as the load's peak. ``malloc_trim(0)``
returns every free page to the system. It is glibc's own call, harmless when
nothing is free; elsewhere (another C library) it is skipped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    """Return the allocator's free pages to the system (glibc); a no-op where that call does not exist."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
