"""A task-level strategy model: how many inner steps a gradient-based learner should take.

The meta-model reads features of the task the client sent — its ways, shots and support size,
the support loss before and after the first inner step, the spread of the support set in the
network's embedding — and predicts, for each candidate step count, the held-out (query) loss
relative to the learner's fixed default. The served choice is the candidate with the lowest
prediction, but only when it beats the default by more than a margin chosen on validation
tasks; otherwise the default stands (the model must never make a task worse than the fixed
default would).

In the spirit of learned optimisers that condition on the task (Li & Malik, 2017, "Learning
to Optimize"; Baik et al., 2020, "Meta-Learning with Adaptive Hyperparameters", ALFA, which
also reads the support loss and the state of the inner loop); here the decision is one
integer per task, from a small MLP trained on meta-training tasks (``strategy_training``).

Stored beside the weights as ``strategy.safetensors`` (the MLP and the feature
standardisation); the manifest's ``step_strategy`` section names the candidates, the default
and the margin, and holds the file's sha256.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor

from app.meta.algorithms.base import MetaLearner
from app.meta.algorithms.inner_loop import recording_steps
from app.meta.types import AdaptedState

FEATURES = ("log_ways", "log_shots", "log_support", "loss_before", "loss_after_one",
            "log_loss_ratio", "log_spread")
HIDDEN = 32


def step_trace(learner: MetaLearner, x: Tensor, y: Tensor, ways: int, steps: int) -> list[AdaptedState]:
    """The adapted state after 0, 1, ..., ``steps`` inner steps, from one adaptation."""
    with recording_steps() as trace, torch.no_grad():
        learner.adapt_params(learner.frozen(), x, y, ways, steps)
    if len(trace) != steps + 1:
        raise ValueError(f"{learner.name} does not adapt by plain gradient steps; no trace")
    return trace


def embedding_spread(learner: MetaLearner, x: Tensor) -> float:
    """Mean distance of the support embeddings to their centroid, over their mean norm."""
    params = learner.frozen()
    if not any(k.startswith("encoder.") for k in params):
        return 0.0
    with torch.no_grad():
        z = learner.encode(params, x).flatten(1)
    spread = (z - z.mean(0)).norm(dim=-1).mean()
    return float(spread / z.norm(dim=-1).mean().clamp_min(1e-8))


def task_features(learner: MetaLearner, x: Tensor, y: Tensor, ways: int,
                  trace: list[AdaptedState] | None = None) -> Tensor:
    """The strategy model's input for one support set (costs one inner step, or reads
    the first two states of a trace already computed)."""
    trace = trace or step_trace(learner, x, y, ways, 1)
    before = learner.support_loss(trace[0], x, y)
    after = learner.support_loss(trace[1], x, y)
    n = x.shape[0]
    shots = n / ways if ways else n
    values = [math.log(ways) if ways else 0.0, math.log(shots), math.log(n), before, after,
              math.log(max(after, 1e-8) / max(before, 1e-8)),
              math.log(max(embedding_spread(learner, x), 1e-8))]
    return torch.tensor([v if math.isfinite(v) else 0.0 for v in values], dtype=torch.float32)


@dataclass
class StepStrategy:
    """Predicts each candidate's query loss relative to the default; chooses with a margin."""

    candidates: list[int]
    default: int
    margin: float
    tensors: dict[str, Tensor]  # mean, std, w1, b1, w2, b2, w3, b3

    @staticmethod
    def initial(candidates: list[int], default: int, mean: Tensor, std: Tensor,
                seed: int = 0) -> StepStrategy:
        if default not in candidates:
            raise ValueError(f"the default {default} must be one of the candidates {candidates}")
        gen = torch.Generator().manual_seed(seed)
        sizes = [len(FEATURES), HIDDEN, HIDDEN, len(candidates)]
        tensors = {"mean": mean.float(), "std": std.float().clamp_min(1e-6)}
        for i, (a, b) in enumerate(zip(sizes, sizes[1:]), start=1):
            tensors[f"w{i}"] = torch.randn(b, a, generator=gen) * (1.0 / math.sqrt(a))
            tensors[f"b{i}"] = torch.zeros(b)
        return StepStrategy(list(candidates), default, 0.0, tensors)

    def predicted(self, features: Tensor, tensors: dict[str, Tensor] | None = None) -> Tensor:
        """Predicted log query loss minus the default's, per candidate: ``[..., C]``."""
        t = tensors or self.tensors
        h = (features - t["mean"]) / t["std"]
        h = F.silu(F.linear(h, t["w1"], t["b1"]))
        h = F.silu(F.linear(h, t["w2"], t["b2"]))
        out = F.linear(h, t["w3"], t["b3"])
        return out - out[..., self.candidates.index(self.default)].unsqueeze(-1)

    def decide(self, features: Tensor, affordable: list[int] | None = None,
               margin: float | None = None) -> int:
        """The step count for one task's features: the best affordable candidate when it is
        predicted to beat the default by more than the margin, else the default."""
        margin = self.margin if margin is None else margin
        with torch.no_grad():
            scores = self.predicted(features)
        allowed = [i for i, k in enumerate(self.candidates)
                   if affordable is None or k in affordable]
        best = min(allowed, key=lambda i: float(scores[i]), default=None)
        if best is None or float(scores[best]) >= -margin:
            return self.default
        return self.candidates[best]

    def choose(self, learner: MetaLearner, x: Tensor, y: Tensor, ways: int,
               max_steps: int) -> int:
        """Serve: the step count for this support set, never above ``max_steps``."""
        return self.choose_with_first_step(learner, x, y, ways, max_steps)[0]

    def choose_with_first_step(self, learner: MetaLearner, x: Tensor, y: Tensor, ways: int,
                               max_steps: int) -> tuple[int, AdaptedState]:
        """``choose``, and the state after the one inner step that reading the task took:
        learners that ``continue`` carry on from it instead of taking that step again."""
        affordable = [k for k in self.candidates if k <= max_steps]
        trace = step_trace(learner, x, y, ways, 1)
        return self.decide(task_features(learner, x, y, ways, trace), affordable), trace[1]

    def save(self, path: Path) -> None:
        save_file({k: v.contiguous() for k, v in self.tensors.items()}, str(path))

    @staticmethod
    def load(path: Path, candidates: list[int], default: int, margin: float) -> StepStrategy:
        tensors = load_file(str(path))
        expected = {"mean", "std", "w1", "b1", "w2", "b2", "w3", "b3"}
        if set(tensors) != expected:
            raise ValueError(f"{path}: tensors {sorted(tensors)}, expected {sorted(expected)}")
        if tensors["w3"].shape[0] != len(candidates) or tensors["w1"].shape[1] != len(FEATURES):
            raise ValueError(f"{path}: shapes do not match {len(FEATURES)} features and "
                             f"{len(candidates)} candidates")
        if default not in candidates:
            raise ValueError(f"default steps {default} is not among the candidates {candidates}")
        return StepStrategy(list(candidates), default, margin, tensors)
