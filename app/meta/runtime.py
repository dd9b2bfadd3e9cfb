"""Process-wide knobs of the ML core, read from the environment: the sentence encoder's threads and
the cache folder (exported encoder graphs, decoded datasets); and giving freed heap back to the
system after long work."""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable
from pathlib import Path


def encoder_threads() -> int:
    """``METASERVE_ENCODER_THREADS``, default 0 = every core this process may use: the threads
    of one ONNX Runtime sentence-encoder call (one call at a time per encoder, a whole batch of
    sentences, so it pays to use all cores; separate from PyTorch's per-worker threads)."""
    raw = os.environ.get("METASERVE_ENCODER_THREADS", "0").strip() or "0"
    try:
        threads = int(raw)
    except ValueError:
        raise ValueError(f"METASERVE_ENCODER_THREADS={raw!r} is not a whole number") from None
    if threads < 0:
        raise ValueError(f"METASERVE_ENCODER_THREADS={threads} must be 0 (every core) or more")
    return threads or len(os.sched_getaffinity(0))


def cache_dir() -> Path:
    """``METASERVE_CACHE_DIR``, default ``./.cache``: decoded datasets."""
    return Path(os.environ.get("METASERVE_CACHE_DIR", ".cache"))


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc
    except (AttributeError, OSError):  # another C library: nothing to call
        return None


def release_free_heap() -> bool:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``); whether it
    could. glibc keeps what large tensors freed (its mmap threshold grows with the sizes it has
    seen), so after fine-tuning a sentence encoder a process holds hundreds of MB it no longer
    uses (two mpnet layers on 100 sentences: ~400 MB). Costs milliseconds: for after long work
    (jobs), not per request."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
