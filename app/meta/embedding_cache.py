"""Embeddings of inputs already seen by this process (photos, sentences), keyed by the model that
embedded them and the sha256 of the input's bytes; least recently used dropped first once
``max_bytes`` of embeddings are held (``METASERVE_EMBEDDING_CACHE_BYTES``, per input kind)."""

from __future__ import annotations

import hashlib

from torch import Tensor

from app.bytes_lru import BytesLRU


class EmbeddingCache(BytesLRU[Tensor]):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes, lambda value: value.numel() * value.element_size())

    @staticmethod
    def key(model: str, data: bytes) -> tuple[str, str]:
        return model, hashlib.sha256(data).hexdigest()
