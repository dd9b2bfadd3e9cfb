"""Meta-learner resources."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class InputSpec(BaseModel):
    kind: str = Field(examples=["image"], description="vector | image | text; `shape` is what one input "
                      "becomes (photos: the preprocessed pixels)")
    shape: list[int] = Field(examples=[[1, 28, 28]])
    dtype: str = Field(examples=["float32"])
    value_range: list[float] | None = Field(None, examples=[[0.0, 1.0]])
    preprocessing: str
    native: str | None = None
    encoder: str | None = Field(None, description="text: the sentence encoder that embeds inputs")
    max_chars: int | None = Field(None, description="text: characters per input")
    runtime: str | None = Field(None, examples=["onnx-int8"], description="text: what computes the "
                                "embeddings: torch (when absent), onnx, or onnx-int8 (int8 weights, about "
                                "three times as fast on CPUs; the learner was meta-trained on them)")
    codec: str | None = Field(None, examples=["photo"], description="how inputs are decoded when "
                              "not by their kind: photo (base64 JPEG/PNG/WebP photographs embedded by "
                              "`backbone`), photo-pixels (the same photos, for learners that fine-tune "
                              "the backbone)")
    backbone: str | None = Field(None, examples=["efficientnet-lite0"],
                                 description="photo: the pinned ImageNet backbone that embeds inputs")


class VersionSummary(BaseModel):
    version: str = Field(examples=["1.1.0"])
    weights_sha256: str
    newest: bool = Field(description="what the bare name resolves to (its stable alias, else the newest "
                         "active version)")
    state: str = Field("active", examples=["active"], description="active, or retired: new adaptations "
                       "refused and its adapted models answer 410")


class MetaLearnerRead(BaseModel):
    name: str = Field(examples=["omniglot-protonet"])
    version: str = Field(examples=["1.0.0"], description="the version described here")
    ref: str = Field(examples=["omniglot-protonet@1.0.0"],
                     description="pass as meta_learner to pin this exact version")
    weights_sha256: str
    algorithm: str = Field(examples=["protonet"])
    family: str = Field(examples=["metric"])
    task_type: str = Field(examples=["classification"])
    input: InputSpec
    limits: dict[str, int] = Field(examples=[{"max_ways": 50, "max_shots": 20}])
    adaptation_defaults: dict[str, Any] = Field(examples=[{"steps": 10}])
    adds_examples: bool = Field(False, description="POST /v1/adapted-models/{id}/examples grows its "
                                "adapted models exactly (memory-based, ProtoNet); others answer 409")
    reads_label_names: bool = Field(False, description="the support's labels are read as words too "
                                    "('alarm_query': 'alarm query'), one more example per class, when "
                                    "they are informative; labels such as 'class_017' change nothing")
    metrics: dict[str, Any] = Field(description="evaluation results from the manifest")
    state: str = Field("active", description="the state of the version described here")
    versions: list[VersionSummary] = Field(description="every installed version, oldest first")
    aliases: dict[str, str] = Field(default_factory=dict, examples=[{"stable": "1.0.0", "canary": "1.1.0"}],
                                    description="alias -> version; name@alias follows it")
    canary_percent: int = Field(0, description="share of the tenants whose adaptations with the bare name "
                                "go to name@canary (always the same tenants)")


class MetaLearnerList(BaseModel):
    items: list[MetaLearnerRead] = Field(description="the newest version of each meta-learner")
