"""Meta-learner resources."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class InputSpec(BaseModel):
    kind: str = Field(examples=["image"], description="vector | image")
    shape: list[int] = Field(examples=[[1, 28, 28]])
    dtype: str = Field(examples=["float32"])
    value_range: list[float] = Field(examples=[[0.0, 1.0]])
    preprocessing: str
    native: str | None = None


class MetaLearnerRead(BaseModel):
    name: str = Field(examples=["omniglot-protonet"])
    version: str = Field(examples=["1.0.0"])
    algorithm: str = Field(examples=["protonet"])
    family: str = Field(examples=["metric"])
    task_type: str = Field(examples=["classification"])
    input: InputSpec
    limits: dict[str, int] = Field(examples=[{"max_ways": 50, "max_shots": 20}])
    adaptation_defaults: dict[str, Any] = Field(examples=[{"steps": 10}])
    metrics: dict[str, Any] = Field(description="evaluation results from the manifest")


class MetaLearnerList(BaseModel):
    items: list[MetaLearnerRead]
