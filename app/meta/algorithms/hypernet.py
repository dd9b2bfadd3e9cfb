"""A parameter-generating meta-learner: a set encoder that writes the base network's weights.

In the spirit of Ha, Dai, Le (2017), "HyperNetworks", and of the set encoders of Garnelo et
al. (2018), "Conditional Neural Processes", and Zaheer et al. (2017), "Deep Sets": each
support pair (x, y) is encoded by an MLP, the codes are averaged (so the result does not
depend on the order of the support set), and a generator maps the task code to a change of
every weight of the base network: θ_task = θ₀ + G(mean_i h(x_i, y_i)). Adaptation is one
forward pass, with zero gradient steps.

Adapted state: every weight of the base network, as generated.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.func import functional_call

from app.meta.algorithms.base import MetaLearner
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
    """Regression on vector inputs; hparams: width."""

    name = "hypernet"
    family = "parameter-generating"

    def __init__(self, model: nn.Module, task_type: str = "regression", **hparams) -> None:
        if task_type != "regression":
            raise ValueError("this hypernetwork generates regression networks")
        super().__init__(model, task_type, **hparams)
        self.shapes = {k: v.shape for k, v in model.named_parameters()}
        n_params = sum(math.prod(s) for s in self.shapes.values())
        in_dim = model.encoder[0].in_features
        self.hyper = SetToParams(in_dim + 1, n_params, int(self.hparams.get("width", 128)))
        for k, v in self.hyper.named_parameters():
            self.params["hyper." + k] = v.detach().clone().requires_grad_(True)

    def adapt_params(
        self, params: dict[str, Tensor], x: Tensor, y: Tensor, ways: int, steps: int
    ) -> AdaptedState:
        flat = functional_call(self.local("hyper"), with_prefix(params, "hyper"), (torch.cat([x, y], -1),))
        out, offset = {}, 0
        for k, shape in self.shapes.items():
            n = math.prod(shape)
            out[k] = params[k] + flat[offset : offset + n].reshape(shape)
            offset += n
        return out

    def predict_params(
        self, params: dict[str, Tensor], state: AdaptedState, x: Tensor
    ) -> Tensor:
        return self.forward(state, x)
