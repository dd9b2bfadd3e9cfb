"""Every input codec by name (an input spec's ``codec``, else its ``kind``)."""

from __future__ import annotations

from app.meta.codecs import ImageCodec, InputCodec, PhotoCodec, PhotoPixelCodec, VectorCodec
from app.meta.input_spec import InputSpec
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


def check_input_spec(spec: InputSpec) -> None:
    """A known codec, and the fields it needs (``ValueError`` naming what is wrong)."""
    if spec.codec_name not in CODECS:
        raise ValueError(f"input codec {spec.codec_name!r} is unknown; known: {sorted(CODECS)}")
    CODECS[spec.codec_name].check_spec(spec)
