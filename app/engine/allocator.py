"""Keep freed tensor memory in the process (glibc's ``mallopt``), instead of handing it back
to the operating system after every call and faulting it in again on the next.

By default glibc serves an allocation above a sliding threshold (128 KiB at first) with a
fresh ``mmap`` and trims the heap whenever more than twice that lies free at its top. A Conv4
forward of 25 Omniglot images allocates several 5 MB activations per call: each came back as
new, zero-filled pages, and the page faults cost more than the arithmetic (one thread, this
project's 2-core machine: 14.4-18.7 ms per forward with glibc's defaults, 6.6-7.4 ms with the
thresholds below; ``python -m benchmarks.allocator``). The price is resident memory: a thread's
heap keeps up to ``trim_threshold`` bytes of freed memory for its next request.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("metaserve.allocator")

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc refuses more on 64-bit machines


def _mallopt():  # noqa: ANN202 - a ctypes function, or None off glibc
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc: macOS, musl without the symbol, Windows
        return None


def keep_freed_memory(trim_threshold: int) -> bool:
    """Serve allocations up to min(trim_threshold, 32 MiB) from the heap and keep up to
    ``trim_threshold`` freed bytes there; ``0`` leaves glibc's defaults. Returns whether the
    allocator took the setting (False off glibc, where nothing changes)."""
    if trim_threshold <= 0:
        return False
    mallopt = _mallopt()
    if mallopt is None:
        log.warning("METASERVE_MALLOC_TRIM_THRESHOLD_BYTES: no glibc mallopt here; allocator left as it is")
        return False
    taken = (mallopt(M_MMAP_THRESHOLD, min(trim_threshold, MMAP_THRESHOLD_MAX)) == 1
             and mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1)
    if not taken:
        log.warning("glibc refused the allocator thresholds (%d bytes)", trim_threshold)
    return taken
