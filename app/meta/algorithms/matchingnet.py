"""Matching Networks: the adapted model is a memory of the support set, read by attention.

Vinyals, Blundell, Lillicrap, Kavukcuoglu, Wierstra (2016), "Matching Networks for One Shot
Learning", NeurIPS. Adapting writes every support example into memory as a key (its
L2-normalised embedding) and a value (its one-hot label); a query reads the memory with
attention a(x̂, x_i) = softmax_i(s · cos(f(x̂), f(x_i))) and predicts Σ_i a_i y_i. Without the
full-context embeddings (FCE) of the paper: keys and queries share one embedding network.
``scale`` (s, default 10) sharpens the cosine attention.

Adapted state (the memory): ``keys`` ``[n, dim]`` and ``values`` ``[n, ways]``. Adding examples
to a model is appending rows to both — exactly what adapting on the union would produce.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from app.meta.algorithms.base import MetaLearner
from app.meta.algorithms.hyperparameters import MatchingHyperparameters
from app.meta.types import AdaptedState


class MatchingNet(MetaLearner):
    """Memory-based learner; the head of the backbone is unused."""

    name = "matchingnet"
    hyperparameters = MatchingHyperparameters
    family = "memory"
    extends = True

    def __init__(self, model, task_type: str = "classification", **hparams) -> None:
        if task_type != "classification":
            raise ValueError("Matching Networks classify; use another algorithm for regression")
        super().__init__(model, task_type, **hparams)
        self.params = {k: v for k, v in self.params.items() if k.startswith("encoder.")}

    def embed(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        z = self.encode(params, x)
        return F.normalize(z, dim=-1)

    def adapt_params(
        self, params: dict[str, Tensor], x: Tensor, y: Tensor, ways: int, steps: int
    ) -> AdaptedState:
        return {"keys": self.embed(params, x), "values": F.one_hot(y, ways).to(x.dtype)}

    def extend(self, state: AdaptedState, x: Tensor, y: Tensor, ways: int) -> AdaptedState:
        with torch.no_grad():
            added = self.adapt_params(self.frozen(), x, y, ways, 0)
        old = state["values"]
        widened = F.pad(old, (0, ways - old.shape[-1]))  # new labels: zero columns for old rows
        return {"keys": torch.cat([state["keys"], added["keys"]]).contiguous(),
                "values": torch.cat([widened, added["values"]]).contiguous()}

    def memory_size(self, state: AdaptedState) -> int:
        return int(state["keys"].shape[0])

    def predict_params(
        self, params: dict[str, Tensor], state: AdaptedState, x: Tensor
    ) -> Tensor:
        scale = float(self.hp.scale)
        attention = torch.softmax(scale * self.embed(params, x) @ state["keys"].T, dim=-1)
        probabilities = attention @ state["values"]
        return torch.log(probabilities.clamp_min(1e-12))  # log-probabilities as logits
