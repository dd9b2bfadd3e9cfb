"""Task types: what a target is, the loss, how raw outputs become predictions, the metric.

One strategy object per task type, registered by name; the algorithms, the evaluation and the
serving engine ask it instead of comparing ``task_type`` strings. A new task type is one
class here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor


class InvalidTargets(ValueError):
    """Targets that cannot be encoded for this task type."""


class TargetLimitExceeded(ValueError):
    """Targets beyond a meta-learner's limits (ways, shots)."""


@dataclass(frozen=True)
class EncodedTargets:
    y: Tensor
    ways: int  # 0 for regression
    labels: list[Any] | None  # class index -> the client's label, in order of first appearance


class TaskType(ABC):
    name: ClassVar[str]

    @abstractmethod
    def encode(self, targets: list[Any], max_ways: int, max_shots: int) -> EncodedTargets:
        """Targets as a tensor; raises InvalidTargets / TargetLimitExceeded."""

    @abstractmethod
    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor: ...

    @abstractmethod
    def outputs(self, raw: Tensor) -> Tensor:
        """Raw model outputs -> what is served (probabilities or values)."""

    @abstractmethod
    def metric(self, raw: Tensor, targets: Tensor) -> Tensor:
        """Per-task metric over the last two dims (accuracy or MSE)."""

    abstains: ClassVar[bool] = False

    @abstractmethod
    def render(self, served: Tensor, labels: list[Any] | None, top_k: int | None = None,
               abstain_threshold: float | None = None) -> list[Any]:
        """Plain-Python predictions, one per input (classification: the ``top_k`` most likely
        labels' probabilities, all when None; label None below ``abstain_threshold``)."""

    def response_bytes(self, n_inputs: int, labels: list[Any] | None, top_k: int | None) -> int:
        """An upper estimate of the rendered predictions' JSON size."""
        return 32 * n_inputs

    @abstractmethod
    def dummy_targets(self, n: int) -> EncodedTargets:
        """A valid target set of ``n`` examples (warm-up)."""

    metric_name: ClassVar[str]
    higher_is_better: ClassVar[bool]

    def better(self, new: float, old: float | None) -> bool:
        if old is None:
            return True
        return new > old if self.higher_is_better else new < old


MAX_LABEL_CHARS = 256


def check_label(label: str) -> None:
    """A label that can be stored, listed and shown: valid Unicode, printable, not too long."""
    if not label or len(label) > MAX_LABEL_CHARS:
        raise InvalidTargets(f"class labels must be 1-{MAX_LABEL_CHARS} characters")
    try:
        label.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidTargets("class labels must be valid Unicode (no lone surrogates)") from None
    if not label.isprintable():
        raise InvalidTargets("class labels must not contain control characters")


class Classification(TaskType):
    name = "classification"
    metric_name = "accuracy"
    higher_is_better = True
    abstains = True

    def encode(self, targets: list[Any], max_ways: int, max_shots: int) -> EncodedTargets:
        kinds = {type(t) for t in targets}
        if kinds - {int, str}:
            raise InvalidTargets("class labels must be strings or integers")
        if len(kinds) > 1:
            raise InvalidTargets("use either string or integer labels, not both")
        for label in targets:
            if isinstance(label, str):
                check_label(label)
            elif isinstance(label, int) and not -(2**53) <= label <= 2**53:
                raise InvalidTargets("integer class labels must lie within ±2**53 (exact in JSON)")
        labels = list(dict.fromkeys(targets))
        if len(labels) < 2:
            raise InvalidTargets("classification needs examples of at least 2 classes")
        if len(labels) > max_ways:
            raise TargetLimitExceeded(f"{len(labels)} classes exceed the limit of {max_ways} ways")
        most = max(Counter(targets).values())
        if most > max_shots:
            raise TargetLimitExceeded(f"{most} examples of one class exceed the limit of "
                                      f"{max_shots} shots")
        index = {label: i for i, label in enumerate(labels)}
        return EncodedTargets(torch.tensor([index[t] for t in targets], dtype=torch.long),
                              len(labels), labels)

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(outputs, targets)

    def outputs(self, raw: Tensor) -> Tensor:
        return torch.softmax(raw, dim=-1)

    def metric(self, raw: Tensor, targets: Tensor) -> Tensor:
        return (raw.argmax(-1) == targets).float().mean(-1)

    def render(self, served: Tensor, labels: list[Any] | None, top_k: int | None = None,
               abstain_threshold: float | None = None) -> list[Any]:
        labels = labels or []
        names = [str(label) for label in labels]
        k = len(names) if top_k is None else min(top_k, len(names))
        # one conversion to Python lists, not an element-wise walk over tensors
        probabilities = served.tolist()
        tops = served.argmax(-1).tolist()
        bests = torch.topk(served, k, dim=-1).indices.tolist() if k < len(names) else None
        out = []
        for row, (p, top) in enumerate(zip(probabilities, tops, strict=True)):
            best = bests[row] if bests is not None else range(len(names))
            abstain = abstain_threshold is not None and p[top] < abstain_threshold
            out.append({"label": None if abstain else labels[top],
                        "probabilities": {names[i]: p[i] for i in best}})
        return out

    def response_bytes(self, n_inputs: int, labels: list[Any] | None, top_k: int | None) -> int:
        sizes = sorted((len(str(label).encode()) + 32 for label in labels or []), reverse=True)
        shown = sizes if top_k is None else sizes[:top_k]
        return n_inputs * (sum(shown) + (sizes[0] if sizes else 0) + 48)

    def dummy_targets(self, n: int) -> EncodedTargets:
        return EncodedTargets(torch.arange(n) % 2, 2, [0, 1])


class Regression(TaskType):
    name = "regression"
    metric_name = "mse"
    higher_is_better = False

    def encode(self, targets: list[Any], max_ways: int, max_shots: int) -> EncodedTargets:
        if any(isinstance(t, bool | str) or not isinstance(t, int | float) for t in targets):
            raise InvalidTargets("regression targets must be numbers")
        try:
            values = [float(t) for t in targets]
        except OverflowError as exc:
            raise InvalidTargets("a target exceeds the float range") from exc
        y = torch.tensor(values, dtype=torch.float32)[:, None]
        if not torch.isfinite(y).all():
            raise InvalidTargets("NaN, infinite or out-of-float32-range targets are not allowed")
        return EncodedTargets(y, 0, None)

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return F.mse_loss(outputs, targets)

    def outputs(self, raw: Tensor) -> Tensor:
        return raw

    def metric(self, raw: Tensor, targets: Tensor) -> Tensor:
        return ((raw - targets) ** 2).mean(dim=(-1, -2))

    def render(self, served: Tensor, labels: list[Any] | None, top_k: int | None = None,
               abstain_threshold: float | None = None) -> list[Any]:
        return served.reshape(-1).tolist()

    def dummy_targets(self, n: int) -> EncodedTargets:
        return EncodedTargets(torch.zeros(n, 1), 0, None)


TASK_TYPES: dict[str, TaskType] = {t.name: t for t in (Classification(), Regression())}


def task_type_for(name: str) -> TaskType:
    try:
        return TASK_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown task type {name!r}; known: {sorted(TASK_TYPES)}") from None
