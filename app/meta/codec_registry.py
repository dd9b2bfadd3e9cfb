"""Every input codec by name (an input spec's ``codec``, else its ``kind``)."""

from __future__ import annotations

from app.meta.codecs import ImageCodec, InputCodec, PhotoCodec, PhotoPixelCodec, VectorCodec
from app.meta.text_codecs import TextCodec, TextTokenCodec

CODECS: dict[str, InputCodec] = {
    c.kind: c for c in (VectorCodec(), ImageCodec(), PhotoCodec(), PhotoPixelCodec(), TextCodec(),
                        TextTokenCodec())}


def codec_for(name: str) -> InputCodec:
    """The codec named by an input spec's ``codec`` (else its ``kind``)."""
    try:
        return CODECS[name]
    except KeyError:
        raise ValueError(f"unknown input codec {name!r}; known: {sorted(CODECS)}") from None
