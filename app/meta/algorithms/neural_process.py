"""An attentive conditional neural process: the adapted model is a memory of context points.

Garnelo et al. (2018), "Conditional Neural Processes", ICML; Kim et al. (2019), "Attentive
Neural Processes", ICLR (its deterministic path). Adapting encodes every support point
(x_i, y_i) into a value r_i and its input into a key k_i = e(x_i); a query x* reads the
memory with scaled dot-product attention, r* = Σ softmax(e(x*)·k_i / √d) r_i, and a decoder
maps (x*, r*) to a Gaussian: a mean and a standard deviation σ = 0.1 + 0.9·softplus(·).
Meta-training maximises the Gaussian log-likelihood of the query points. No gradient steps at
adaptation time: one forward pass writes the memory.

Adapted state (the memory): ``keys`` ``[n, d]`` and ``values`` ``[n, d]``; adding points is
appending rows, exactly what adapting on the union gives. ``predict`` returns the mean
(``[m, 1]``), ``predict_with_std`` the mean and the standard deviation together.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from app.meta.algorithms.base import MetaLearner
from app.meta.backbones import with_prefix
from app.meta.types import AdaptedState


class NeuralProcess(MetaLearner):
    name = "neural-process"
    family = "memory"
    gives_std = True
    extends = True

    def __init__(self, model, task_type: str = "regression", **hparams) -> None:
        if task_type != "regression":
            raise ValueError("this neural process regresses; use another algorithm to classify")
        super().__init__(model, task_type, **hparams)

    def _call(self, params: dict[str, Tensor], part: str, x: Tensor) -> Tensor:
        return functional_call(getattr(self.local(), part), with_prefix(params, part), (x,))

    def adapt_params(
        self, params: dict[str, Tensor], x: Tensor, y: Tensor, ways: int, steps: int
    ) -> AdaptedState:
        return {"keys": self._call(params, "keys", x),
                "values": self._call(params, "values", torch.cat([x, y], dim=-1))}

    def extend(self, state: AdaptedState, x: Tensor, y: Tensor, ways: int) -> AdaptedState:
        with torch.no_grad():
            added = self.adapt_params(self.frozen(), x, y, ways, 0)
        return {k: torch.cat([state[k], added[k]]).contiguous() for k in ("keys", "values")}

    def memory_size(self, state: AdaptedState) -> int:
        return int(state["keys"].shape[0])

    def _gaussian(self, params: dict[str, Tensor], state: AdaptedState, x: Tensor) -> tuple[Tensor, Tensor]:
        query = self._call(params, "keys", x)
        scores = query @ state["keys"].T / math.sqrt(query.shape[-1])
        r = torch.softmax(scores, dim=-1) @ state["values"]
        out = self._call(params, "decoder", torch.cat([x, r], dim=-1))
        return out[..., :1], 0.1 + 0.9 * F.softplus(out[..., 1:])

    def predict_params(
        self, params: dict[str, Tensor], state: AdaptedState, x: Tensor
    ) -> Tensor:
        return self._gaussian(params, state, x)[0]

    def predict_with_std(self, state: AdaptedState, x: Tensor) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            return self._gaussian(self.frozen(), state, x)

    def task_query_loss(self, params: dict[str, Tensor], sx, sy, qx, qy, ways: int) -> Tensor:
        """Negative Gaussian log-likelihood of the query points (per point, mean)."""
        state = self.adapt_params(params, sx, sy, ways, 0)
        mean, std = self._gaussian(params, state, qx)
        return (torch.log(std) + 0.5 * ((qy - mean) / std) ** 2).mean() + 0.5 * math.log(2 * math.pi)
