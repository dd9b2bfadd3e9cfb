"""Prototypical Networks: classify by distance to class means in a learned embedding.

Snell, Swersky, Zemel (2017), "Prototypical Networks for Few-shot Learning", NeurIPS. A task
is adapted by embedding its support set and averaging each class's embeddings into a
prototype c_k; a query's logits are −‖f(x) − c_k‖² / T. No gradient steps at adaptation time.
``temperature`` (T, default 1) is fitted after meta-training on validation
episodes so that the served probabilities are calibrated; it never changes the argmax. With
``shot_temperature`` (s) the temperature is T + s / k̄, k̄ the task's mean number of
examples per class: a prototype of one example is a noisier estimate than one of ten, so the
same distances deserve less confidence (still one temperature per task: the argmax stays).

Adapted state: ``prototypes`` ``[ways, feature_dim]`` and ``counts`` ``[ways]`` (support
examples per class). Adding examples to a model updates each prototype as a running mean,
(n·c + Σ new) / (n + m) — the prototype an adaptation on the union would compute, to float
rounding — and a new label gets a new prototype. States from before ``counts`` was kept
cannot grow (``can_extend``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from app.meta.algorithms.base import AdaptOptions, MetaLearner
from app.meta.algorithms.hyperparameters import PrototypeHyperparameters
from app.meta.types import AdaptedState


class ProtoNet(MetaLearner):
    """Metric-based learner; the head of the backbone is unused."""

    name = "protonet"
    hyperparameters = PrototypeHyperparameters
    family = "metric"
    extends = True

    def __init__(self, model, task_type: str = "classification", **hparams) -> None:
        if task_type != "classification":
            raise ValueError("Prototypical Networks classify; use another algorithm for regression")
        super().__init__(model, task_type, **hparams)
        self.params = {k: v for k, v in self.params.items() if k.startswith("encoder.")}

    def embed(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        return self.encode(params, x)

    def adapt_params(
        self, params: dict[str, Tensor], x: Tensor, y: Tensor, ways: int, steps: int
    ) -> AdaptedState:
        return self.prototypes_of(self.embed(params, x), y, ways)

    @staticmethod
    def prototypes_of(z: Tensor, y: Tensor, ways: int) -> AdaptedState:
        """Class means of the embeddings ``z`` [n, d] and the examples per class."""
        onehot = F.one_hot(y, ways).to(z.dtype)  # [n, ways]
        counts = onehot.sum(0)
        return {"prototypes": (onehot.T @ z) / counts.clamp_min(1.0)[:, None], "counts": counts}

    def can_extend(self, state: AdaptedState) -> bool:
        return "counts" in state

    def extend(self, state: AdaptedState, x: Tensor, y: Tensor, ways: int) -> AdaptedState:
        if not self.can_extend(state):
            raise ValueError("this state has no per-class counts; it cannot grow")
        with torch.no_grad():
            added = self.adapt_params(self.frozen(), x, y, ways, 0)
        widen = ways - state["counts"].shape[0]  # new labels: empty classes in the old state
        counts = F.pad(state["counts"], (0, widen)) + added["counts"]
        sums = (F.pad(state["prototypes"] * state["counts"][:, None], (0, 0, 0, widen))
                + added["prototypes"] * added["counts"][:, None])
        return {"prototypes": (sums / counts.clamp_min(1.0)[:, None]).contiguous(),
                "counts": counts.contiguous()}

    def memory_size(self, state: AdaptedState) -> int:
        return int(state["counts"].sum())

    def predict_params(
        self, params: dict[str, Tensor], state: AdaptedState, x: Tensor
    ) -> Tensor:
        return self.logits(self.embed(params, x), state["prototypes"], state.get("counts"))

    def logits(self, z: Tensor, protos: Tensor, counts: Tensor | None = None) -> Tensor:
        sq = (z * z).sum(-1, keepdim=True) - 2 * z @ protos.T + (protos * protos).sum(-1)
        temperature = float(self.hp.temperature)
        per_shot = float(self.hp.shot_temperature or 0.0)
        if per_shot and counts is not None:
            return -sq / (temperature + per_shot / counts.mean().clamp_min(1.0))
        return -sq / temperature

    def adapt_with_support_outputs(
        self, x: Tensor, y: Tensor, ways: int = 0, options: AdaptOptions | None = None
    ) -> tuple[AdaptedState, Tensor | None]:
        """One embedding of the support set for both the prototypes and the support logits
        (``predict(state, x)`` would embed it again: the same values, a second forward pass).
        Families that also take steps (fine-tuning) adapt the default way."""
        if self.has_steps:
            return super().adapt_with_support_outputs(x, y, ways, options)
        with torch.no_grad():
            z = self.embed(self.frozen(), x)
            state = {k: v.contiguous() for k, v in self.prototypes_of(z, y, ways).items()}
            return state, self.logits(z, state["prototypes"], state.get("counts"))
