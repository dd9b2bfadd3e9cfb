"""Tensors computed from a data set (embeddings), kept in the cache directory as safetensors
under a name derived from what they depend on, with optional string metadata."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

Computed = tuple[dict[str, Tensor], dict[str, str]]


def cached_tensors(cache_dir: Path | None, prefix: str, key: str, compute: Callable[[], Computed]) -> Computed:
    """``compute()``'s tensors and metadata, read from ``cache_dir/<prefix>-<hash of key>.safetensors``
    when there, else computed and written there (nothing is kept when ``cache_dir`` is None)."""
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{prefix}-{hashlib.sha256(key.encode()).hexdigest()[:24]}.safetensors"
        if path.is_file():
            with safe_open(str(path), framework="pt") as stored:
                return {k: stored.get_tensor(k) for k in stored.keys()}, dict(stored.metadata() or {})
    tensors, metadata = compute()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata or None)
    return tensors, metadata
