"""Sinusoid regression tasks of the MAML paper (Finn et al., 2017, section 5.1).

A task is y = A sin(x − φ) with amplitude A ~ U[0.1, 5], phase φ ~ U[0, π] and inputs
x ~ U[−5, 5].
"""

from __future__ import annotations

import math

import torch

from app.meta.types import TaskBatch

AMPLITUDE = (0.1, 5.0)
PHASE = (0.0, math.pi)
X_RANGE = (-5.0, 5.0)


class SinusoidTasks:
    """Samples batches of sinusoid tasks; deterministic for a given generator."""

    def __init__(self, shots: int, queries: int, device: str = "cpu") -> None:
        self.shots, self.queries, self.device = shots, queries, device

    def sample(self, n_tasks: int, generator: torch.Generator) -> TaskBatch:
        amp = torch.empty(n_tasks, 1, 1).uniform_(*AMPLITUDE, generator=generator)
        phase = torch.empty(n_tasks, 1, 1).uniform_(*PHASE, generator=generator)
        n = self.shots + self.queries
        x = torch.empty(n_tasks, n, 1).uniform_(*X_RANGE, generator=generator)
        y = amp * torch.sin(x - phase)
        s = self.shots
        return TaskBatch(x[:, :s], y[:, :s], x[:, s:], y[:, s:]).to(self.device)
