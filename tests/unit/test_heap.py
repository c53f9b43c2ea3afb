"""connectors.heap: giving freed heap back never fails, and does give it back on glibc."""

from __future__ import annotations

import ctypes.util

from connectors.heap import release_free_heap


def test_release_free_heap_after_freeing_a_large_heap() -> None:
    blocks = [bytearray(100_000) for _ in range(2_000)]  # ~200 MB in malloc'd chunks below mmap's
    del blocks
    released = release_free_heap()
    assert isinstance(released, bool)
    if ctypes.util.find_library("c"):
        assert released
