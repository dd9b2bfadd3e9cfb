"""Embeddings of inputs already seen by this process (photos, sentences), keyed by the model that
embedded them and the sha256 of the input's bytes; least recently used dropped first once
``max_bytes`` of embeddings are held (``METASERVE_EMBEDDING_CACHE_BYTES``, per input kind)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Sequence

import torch
from torch import Tensor

from app.bytes_lru import BytesLRU


class EmbeddingCache(BytesLRU[Tensor]):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes, lambda value: value.numel() * value.element_size())

    @staticmethod
    def key(model: str, data: bytes) -> tuple[str, str]:
        return model, hashlib.sha256(data).hexdigest()

    def embed(self, keys: Sequence[Hashable | None], compute: Callable[[list[int]], Tensor],
              read: bool = True) -> Tensor:
        """The embeddings ``[n, dim]`` of the inputs that ``keys`` name: cached ones from here, the
        others computed in one ``compute(rows)`` call (``rows``: one input of each distinct key, in
        order; an input twice in one call is embedded once) and kept. A ``None`` key is an input
        that is computed and never kept. ``read=False`` computes every input (what the call would
        compute on an empty cache) and keeps those not kept already."""
        out: list[Tensor | None] = [None] * len(keys)
        pending: dict[Hashable, list[int]] = {}  # key -> rows
        transient: set[object] = set()  # stand-ins for the None keys
        for i, key in enumerate(keys):
            if key is None:
                stand_in = object()
                transient.add(stand_in)
                pending[stand_in] = [i]
            elif key in pending:
                pending[key].append(i)
            elif read and (cached := self.get(key)) is not None:
                out[i] = cached
            else:
                pending[key] = [i]
        if pending:
            computed = compute([rows[0] for rows in pending.values()])
            for (key, rows), row in zip(pending.items(), computed, strict=True):
                row = row.clone()
                if key not in transient:
                    self.put(key, row)
                for i in rows:
                    out[i] = row
        return torch.stack(out)  # type: ignore[arg-type]
