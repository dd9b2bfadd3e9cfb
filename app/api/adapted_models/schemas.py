"""Adapted-model resources: create, read, list, predictions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictFloat,
    StrictInt,
    WithJsonSchema,
)

from app.api.schemas import Inputs, Label
from app.engine.types import AdaptationReport

SINE_EXAMPLE = {
    "meta_learner": "sinusoid-maml",
    "support": {"inputs": [[-4.0], [-2.0], [0.0], [1.5], [3.0]],
                "targets": [1.96, -1.20, -0.96, 1.68, 1.20]},
    "options": {"steps": 10},
}
# an image task: 105x105 Omniglot-style PNGs (base64; here one drawing repeated), any labels
_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAGkAAABpAQAAAAAR+TCXAAAAK0lEQVR4nGP8z4AEGpkYUMAoFwuX0WFQOGOUO8od5VLA"
        "ZYFQ/7HLjnKRAQAnUgOU80243QAAAABJRU5ErkJggg==")
IMAGE_EXAMPLE = {
    "meta_learner": "omniglot-protonet",
    "support": {"inputs": [_PNG, _PNG, _PNG], "targets": ["alpha", "beta", "gamma"]},
}


class SupportSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: Inputs = Field(min_length=1, max_length=10_000,
                                description="one item per example; see the meta-learner's input spec")
    targets: list[Label | StrictFloat] = Field(min_length=1, max_length=10_000,
                                         description="class labels (strings or integers) or numbers")


def _steps(value: Any) -> int | str | None:
    """A number of steps or "auto", checked in one place so a 422 names ``options.steps``."""
    if value is None or value == "auto":
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ValueError('steps must be a non-negative integer or "auto"')


Steps = Annotated[int | str | None, PlainValidator(_steps), WithJsonSchema({"anyOf": [
    {"type": "integer", "minimum": 0}, {"type": "string", "const": "auto"}, {"type": "null"}]})]


class AdaptOptionsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    steps: Steps = Field(
        None, description="gradient steps (optimization-based only); \"auto\": the meta-learner "
        "version's step-strategy model chooses them for this support set, which is also what "
        "leaving steps out does on versions that ship one (adaptation_defaults.steps = \"auto\")")
    ttl_seconds: StrictInt | None = Field(None, ge=1, description="lifetime; default and maximum in settings")
    abstain_threshold: StrictFloat | None = Field(
        None, gt=0, lt=1, description="classification: inputs whose top probability is below this "
        "come back with label null (out of scope)")


class AdaptedModelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [SINE_EXAMPLE, IMAGE_EXAMPLE]})
    meta_learner: str = Field(min_length=1, max_length=141, examples=["omniglot-protonet",
                                                                      "omniglot-protonet@1.0.0"],
                              description="a name (its newest version) or name@version")
    support: SupportSet
    options: AdaptOptionsIn = Field(default_factory=AdaptOptionsIn)


class AdaptedModelRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str = Field(examples=["3f2a9c1e0b7d4e6f8a5b2c1d0e9f8a7b"])
    meta_learner: str
    meta_learner_version: str = Field(description="the exact version that adapted this model; "
                                      "its predictions always run on that version's weights")
    revision: int = Field(1, description="1 when adapted; +1 each time examples are added")
    status: Literal["queued", "running", "ready", "failed"] = Field(
        description="queued -> running -> ready | failed; only a ready model predicts")
    progress: float | None = Field(None, ge=0, le=1, description="fraction of the adaptation "
                                   "done (jobs)")
    error: dict[str, Any] | None = Field(None, description="failed: the problem body (RFC 9457) "
                                         "that says why")
    task_type: str
    labels: list[Label] | None = None
    abstain_threshold: float | None = None
    adaptation: AdaptationReport | None = Field(None, description="set once ready")
    created_at: datetime
    expires_at: datetime


class AdaptedModelList(BaseModel):
    items: list[AdaptedModelRead]
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next page")


class PredictionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"inputs": [[0.5]]}]})
    inputs: Inputs = Field(min_length=1, max_length=10_000)
    top_k: StrictInt | None = Field(None, ge=1, description="classification: return the probabilities "
                                    "of the k most likely labels only (default: every label)")


class ClassPrediction(BaseModel):
    label: Label | None = Field(description="null when the model abstains (below its abstain_threshold)")
    probabilities: dict[str, float] = Field(description="per class label (as a string)")


class ClassificationPredictions(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "task_type": "classification",
        "predictions": [{"label": "alpha", "probabilities": {"alpha": 0.91, "beta": 0.09}}]}]})
    task_type: Literal["classification"] = "classification"
    predictions: list[ClassPrediction]


class RegressionPredictions(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "task_type": "regression", "predictions": [0.53, -1.2]}]})
    task_type: Literal["regression"] = "regression"
    predictions: list[float]
    std: list[float] | None = Field(None, description="the predictive standard deviation of each "
                                    "prediction, from learners that give one (neural processes)")


PredictionResponse = Annotated[ClassificationPredictions | RegressionPredictions,
                               Field(discriminator="task_type")]


def predictions_response(task_type: str, predictions: list[Any], std: list[float] | None = None) -> Any:
    if task_type == ClassificationPredictions.model_fields["task_type"].default:
        return ClassificationPredictions(predictions=predictions)
    return RegressionPredictions(predictions=predictions, std=std)


def row_to_read(row: Any) -> AdaptedModelRead:
    return AdaptedModelRead.model_validate(row)
