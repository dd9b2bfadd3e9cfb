"""Fit a ProtoNet's served temperature T + s / k (k: shots per class) on validation episodes so
that its probabilities are calibrated; the argmax never changes."""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor


def fit_shot_temperature(raw: dict[int, tuple[Tensor, Tensor]]) -> tuple[float, float]:
    """(T, s) minimising the summed query NLL of ``logits / (T + s / k)`` over the shot settings
    ``k`` of ``raw`` (k -> (logits at temperature 1, truth)); a grid over log T and log s, s = 0
    included."""
    best = (float("inf"), 1.0, 0.0)
    temperatures = torch.linspace(-3, 6, 91).exp().tolist()
    slopes = [0.0] + torch.linspace(-3, 4, 57).exp().tolist()
    for t in temperatures:
        for s in slopes:
            nll = sum(float(F.cross_entropy(logits / (t + s / k), truth)) for k, (logits, truth) in raw.items())
            best = min(best, (nll, t, s))
    return best[1], best[2]


def raw_logits(learner, sampler, tasks: int, seed: int) -> tuple[Tensor, Tensor]:
    """Query logits at temperature 1 (T = 1, s = 0) and their labels over ``tasks`` episodes."""
    saved = learner.hp
    learner.hp = replace(saved, temperature=1.0, shot_temperature=0.0)
    try:
        batch = sampler.sample(tasks, torch.Generator().manual_seed(seed))
        with torch.no_grad():
            states = learner.adapt_batch(batch.support_x, batch.support_y, batch.ways)
            logits = learner.predict_batch(states, batch.query_x)
    finally:
        learner.hp = saved
    return logits.reshape(-1, logits.shape[-1]), batch.query_y.reshape(-1)
