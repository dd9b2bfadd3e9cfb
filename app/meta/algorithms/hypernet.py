"""A parameter-generating meta-learner: a set encoder that writes the base network's weights.

In the spirit of Ha, Dai, Le (2017), "HyperNetworks", and of the set encoders of Garnelo et
al. (2018), "Conditional Neural Processes", and Zaheer et al. (2017), "Deep Sets": each
support pair (x, y) is encoded by an MLP, the codes are averaged (so the result does not
depend on the order of the support set), and a generator maps the task code to a change of
every weight of the base network: θ_task = θ₀ + G(mean_i h(x_i, y_i)). Adaptation is one
forward pass, with zero gradient steps.

Adapted state: every weight of the base network, as generated, plus the task code (the mean
of the pair codes, ``task_code``) and the number of pairs it averages (``pairs``). Adding
examples to a model re-encodes only the new pairs: the code becomes the running mean
(n·c + Σ h(x_j, y_j)) / (n + m) and the generator writes the weights again — what adapting on
the union would give, to float rounding. States from before the code was kept cannot grow.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.func import functional_call

from app.meta.algorithms.base import MetaLearner
from app.meta.algorithms.hyperparameters import HyperNetHyperparameters
from app.meta.backbones import with_prefix
from app.meta.types import AdaptedState


class SetToParams(nn.Module):
    """Deep-sets encoder over (x, y) pairs followed by a parameter generator."""

    def __init__(self, pair_dim: int, n_params: int, width: int = 128) -> None:
        super().__init__()
        self.encode = nn.Sequential(
            nn.Linear(pair_dim, width), nn.ReLU(),
            nn.Linear(width, width), nn.ReLU(),
            nn.Linear(width, width),
        )
        self.generate = nn.Sequential(
            nn.Linear(width, 2 * width), nn.ReLU(),
            nn.Linear(2 * width, 2 * width), nn.ReLU(),
            nn.Linear(2 * width, n_params),
        )
        nn.init.zeros_(self.generate[-1].weight)
        nn.init.zeros_(self.generate[-1].bias)

    def forward(self, pairs: Tensor) -> Tensor:
        return self.generate(self.encode(pairs).mean(0))


class HyperNet(MetaLearner):
    """Regression on vector inputs (``HyperNetHyperparameters``: width)."""

    name = "hypernet"
    hyperparameters = HyperNetHyperparameters
    family = "parameter-generating"
    extends = True  # by re-encoding the new pairs into the running-mean task code

    def __init__(self, model: nn.Module, task_type: str = "regression", **hparams) -> None:
        if task_type != "regression":
            raise ValueError("this hypernetwork generates regression networks")
        super().__init__(model, task_type, **hparams)
        self.shapes = {k: v.shape for k, v in model.named_parameters()}
        n_params = sum(math.prod(s) for s in self.shapes.values())
        in_dim = model.encoder[0].in_features
        self.hyper = SetToParams(in_dim + 1, n_params, self.hp.width)
        for k, v in self.hyper.named_parameters():
            self.params["hyper." + k] = v.detach().clone().requires_grad_(True)

    def _write(self, params: dict[str, Tensor], code: Tensor) -> dict[str, Tensor]:
        hyper = with_prefix(params, "hyper")
        flat = functional_call(self.local("hyper").generate, with_prefix(hyper, "generate"), (code,))
        out, offset = {}, 0
        for k, shape in self.shapes.items():
            n = math.prod(shape)
            out[k] = params[k] + flat[offset : offset + n].reshape(shape)
            offset += n
        return out

    def _codes(self, params: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        hyper = with_prefix(params, "hyper")
        return functional_call(self.local("hyper").encode, with_prefix(hyper, "encode"),
                               (torch.cat([x, y], -1),))

    def adapt_params(
        self, params: dict[str, Tensor], x: Tensor, y: Tensor, ways: int, steps: int
    ) -> AdaptedState:
        code = self._codes(params, x, y).mean(0)
        return {**self._write(params, code), "task_code": code,
                "pairs": torch.full((), float(x.shape[0]), dtype=x.dtype, device=x.device)}

    def can_extend(self, state: AdaptedState) -> bool:
        return "task_code" in state and "pairs" in state

    def extend(self, state: AdaptedState, x: Tensor, y: Tensor, ways: int) -> AdaptedState:
        if not self.can_extend(state):
            raise ValueError("this state has no task code; it cannot grow")
        params = self.frozen()
        with torch.no_grad():
            total = state["pairs"] + x.shape[0]
            code = (state["task_code"] * state["pairs"] + self._codes(params, x, y).sum(0)) / total
            grown = {**self._write(params, code), "task_code": code, "pairs": total}
        return {k: v.contiguous() for k, v in grown.items()}

    def memory_size(self, state: AdaptedState) -> int:
        return int(state["pairs"])

    def predict_params(
        self, params: dict[str, Tensor], state: AdaptedState, x: Tensor
    ) -> Tensor:
        return self.forward({k: state[k] for k in self.shapes}, x)
