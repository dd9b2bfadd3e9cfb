"""Process-wide knobs of the ML core: giving freed heap back to the system."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from app.meta.runtime import _malloc_trim, release_free_heap


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(_malloc_trim() is None or not Path("/proc/self/status").exists(),
                    reason="glibc on Linux only")
def test_freed_heap_below_a_live_block_goes_back_to_the_system():
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(64 * 1024) for _ in range(3200)]  # 200 MB of heap blocks (under the mmap threshold)
    for block in blocks:
        ctypes.memset(block, 1, 64 * 1024)  # touched: resident
    keeper = libc.malloc(64 * 1024)  # a live block above them: the heap's top cannot shrink by itself
    for block in blocks:
        libc.free(block)
    held = rss_mb()
    assert release_free_heap()
    released = held - rss_mb()
    libc.free(keeper)
    assert released > 150, f"only {released:.0f} MB of 200 went back"
