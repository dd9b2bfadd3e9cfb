"""Typed resources, mirroring the server's OpenAPI schemas (a test keeps them in step)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")  # newer servers may add fields


class InputSpec(_Model):
    kind: str
    shape: list[int]
    dtype: str
    value_range: list[float] | None = None
    preprocessing: str
    native: str | None = None
    encoder: str | None = None
    max_chars: int | None = None


class VersionSummary(_Model):
    version: str
    weights_sha256: str
    newest: bool


class MetaLearner(_Model):
    """A meta-learner version the server serves."""

    name: str
    version: str
    ref: str
    weights_sha256: str
    algorithm: str
    family: str
    task_type: Literal["classification", "regression"]
    input: InputSpec
    limits: dict[str, int]
    adaptation_defaults: dict[str, Any]
    metrics: dict[str, Any]
    versions: list[VersionSummary]


class AdaptationReport(_Model):
    steps: int
    steps_chosen_by: str | None = None  # "request" | "default" | "strategy"
    duration_ms: float
    support_loss_before: float | None
    support_loss_after: float


class ClassPrediction(_Model):
    label: int | str | None
    probabilities: dict[str, float]


class AdaptedModel(_Model):
    """An adapted model; ``predict``, ``wait``, ``add_examples`` and ``delete`` call the server."""

    id: str
    meta_learner: str
    meta_learner_version: str
    status: str = "ready"
    task_type: Literal["classification", "regression"]
    labels: list[int | str] | None = None
    abstain_threshold: float | None = None
    adaptation: AdaptationReport | None = None
    created_at: datetime
    expires_at: datetime
    progress: float | None = Field(None, description="set by servers that report job progress")
    problem: dict[str, Any] | None = Field(None, description="why an asynchronous job failed")
    _client: Any = PrivateAttr(default=None)

    def bind(self, client: Any) -> AdaptedModel:
        """Attach the client whose calls ``predict``, ``wait`` and ``delete`` use."""
        self._client = client
        return self

    def _resource(self) -> Any:
        if self._client is None:
            raise RuntimeError("this AdaptedModel is not bound to a client")
        return self._client.adapted_models

    def predict(self, inputs: list[Any], top_k: int | None = None) -> list[Any]:
        """Predictions for ``inputs``: a number per input (regression) or a
        :class:`ClassPrediction` per input (classification)."""
        return self._resource().predict(self, inputs, top_k=top_k)

    def wait(self, timeout: float = 300.0, poll: float = 0.5) -> AdaptedModel:
        """Block until the model is ready (asynchronous jobs); raises JobFailed / WaitTimeout."""
        return self._resource().wait(self.id, timeout=timeout, poll=poll)

    def add_examples(self, inputs: list[Any], targets: list[Any]) -> AdaptedModel:
        """Add labelled examples to this model, where the server supports it."""
        return self._resource().add_examples(self, inputs, targets)

    def delete(self) -> None:
        """Delete this adapted model."""
        self._resource().delete(self.id)

    @property
    def ready(self) -> bool:
        """Whether the model can predict (asynchronous jobs start ``queued``)."""
        return self.status == "ready"
