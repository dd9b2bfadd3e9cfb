"""The typed description of a meta-learner's input, as its manifest declares it (``input``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class InputSpec(BaseModel):
    """What a meta-learner takes as input; its codec (``app.meta.codec_registry``) checks that the
    fields it needs are there (``check_input_spec``, run by the manifest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: str
    shape: list[int]
    dtype: str = "float32"
    value_range: list[float] | None = None
    preprocessing: str = ""
    native: str | None = None
    encoder: str | None = None  # text: the pinned sentence encoder (app.meta.text_encoder)
    max_chars: int | None = Field(None, ge=1)  # text: characters per input
    runtime: str | None = None  # text: what computes the embeddings: "torch" (default), "onnx", "onnx-int8"
    codec: str | None = None  # the codec when it is not named after the kind (photo images)
    backbone: str | None = None  # photo: the pinned ImageNet backbone (app.meta.image_backbone)

    @property
    def codec_name(self) -> str:
        return self.codec or self.kind
