"""Give freed heap memory back to the operating system (glibc ``malloc_trim``).

A worker that applied a backlog keeps its peak in resident memory: glibc's per-thread arenas hold
freed pages (parsed batches, fetched record sets, the arrays a growing hash table left behind)
for reuse rather than returning them. ``malloc_trim(0)`` walks every arena and releases whole free
pages (``madvise(MADV_DONTNEED)``), so RSS follows the live state. A few milliseconds per call; a
no-op where glibc is absent (musl, macOS).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def _load() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _load()


def release_free_heap() -> bool:
    """Return free heap pages to the OS; True when something was released."""
    return bool(_TRIM(0)) if _TRIM is not None else False
