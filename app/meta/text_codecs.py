"""Sentence inputs: embedded by a pinned sentence encoder (``text``), or tokenised for learners
that run the encoder themselves (``text-tokens``)."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor

from app.meta.codecs import InputCodec, InputError, InputLimitExceeded, InputLimits
from app.meta.embedding_cache import EmbeddingCache
from app.meta.input_spec import InputSpec


def label_phrase(label: Any) -> str | None:
    """A label read as words: ``"alarm_query"`` -> "alarm query", ``"CardArrival"`` -> "Card
    Arrival"; None for a label without letters (a number, say)."""
    if not isinstance(label, str) or not any(c.isalpha() for c in label):
        return None
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", label)
    return " ".join(re.sub(r"[_\-./:]+", " ", spaced).split())


def label_phrases(labels: list[Any], max_chars: int | None = None) -> list[str] | None:
    """Every label as a phrase (cut to ``max_chars`` when given), or None unless every label has
    letters: what a learner that reads label names is given."""
    phrases = [label_phrase(label) for label in labels]
    if not phrases or any(p is None for p in phrases):
        return None
    return [p[:max_chars] for p in phrases]


class TextCodec(InputCodec):
    """UTF-8 sentences, embedded by the meta-learner's pinned sentence encoder (``encoder``
    in the input spec, computed by its ``runtime``), at most ``max_chars`` characters each. A
    sentence is embedded once per process (the cache keys it by encoder, runtime and text); a
    sentence's embedding depends on the sentence only (``app.meta.onnx_encoder``), so a cached
    one is what computing it again would give."""

    kind = "text"

    def __init__(self) -> None:
        self.cache = EmbeddingCache(InputLimits().embedding_cache_bytes)

    def decode_one(self, item: Any, spec: InputSpec, where: str, limits: InputLimits) -> Any:
        if not isinstance(item, str):
            raise InputError(f"{where}: this meta-learner takes strings (sentences)")
        if not item.strip():
            raise InputError(f"{where}: empty or whitespace-only text")
        max_chars = int(spec.max_chars or 1000)
        if len(item) > max_chars:
            raise InputLimitExceeded(f"{where}: text of {len(item)} characters exceeds {max_chars}")
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"{where}: not valid Unicode (a lone surrogate)") from None
        return item

    def label_inputs(self, labels: list[Any], spec: InputSpec) -> list[Any] | None:
        """Every label as a phrase (cut to ``max_chars``); None unless every label has letters."""
        return label_phrases(labels, int(spec.max_chars or 1000))

    def check_spec(self, spec: InputSpec) -> None:
        if not (spec.encoder and spec.max_chars):
            raise ValueError("text inputs need an encoder and max_chars")
        from app.meta.text_encoder import RUNTIMES

        if (spec.runtime or "torch") not in RUNTIMES:
            raise ValueError(f"text input runtime {spec.runtime!r} is unknown; known: {list(RUNTIMES)}")

    def warm(self, spec: InputSpec) -> None:
        from app.meta.text_encoder import load_encoder

        load_encoder(spec.encoder, spec.runtime or "torch").encode(["warm up"])

    def decode(self, inputs: list[Any], spec: InputSpec, field: str, limits: InputLimits) -> Tensor:
        from app.meta.text_encoder import load_encoder

        if not inputs:
            raise InputError(f"{field}: at least one input is required")
        sentences = [self.decode_one(item, spec, f"{field}[{i}]", limits) for i, item in enumerate(inputs)]
        if self.cache.max_bytes != limits.embedding_cache_bytes:
            self.cache = EmbeddingCache(limits.embedding_cache_bytes)
        runtime = spec.runtime or "torch"
        model = f"{spec.encoder}|{runtime}"
        keys = [self.cache.key(model, sentence.encode("utf-8")) for sentence in sentences]
        return self.cache.embed(keys, lambda rows: load_encoder(spec.encoder, runtime).encode(
            [sentences[i] for i in rows]), read=limits.reuse_embeddings)


class TextTokenCodec(TextCodec):
    """The text codec for learners that run the encoder themselves (per-task fine-tuning of its
    top layers): they receive token ids and attention masks ``[n, 2, tokens]`` (float32, padded
    to ``shape[1]`` tokens, longer sentences truncated), not embeddings."""

    kind = "text-tokens"

    def check_spec(self, spec: InputSpec) -> None:
        super().check_spec(spec)
        shape = list(spec.shape or [])
        if len(shape) != 2 or shape[0] != 2 or shape[1] < 8:
            raise ValueError("text-tokens inputs have shape [2, max_tokens] (ids and mask, max_tokens >= 8)")

    def warm(self, spec: InputSpec) -> None:
        from app.meta.text_encoder import load_encoder

        load_encoder(spec.encoder, "torch")

    def decode(self, inputs: list[Any], spec: InputSpec, field: str, limits: InputLimits) -> Tensor:
        from app.meta.text_encoder import load_encoder

        if not inputs:
            raise InputError(f"{field}: at least one input is required")
        sentences = [self.decode_one(item, spec, f"{field}[{i}]", limits) for i, item in enumerate(inputs)]
        return load_encoder(spec.encoder, "torch").tokenize(sentences, int(spec.shape[1])).to(torch.float32)
