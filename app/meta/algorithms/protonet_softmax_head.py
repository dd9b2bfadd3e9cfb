"""Prototypical Networks whose prototype classifier is refined into a softmax head per task.

Triantafillou et al. (2020), "Meta-Dataset: A Dataset of Datasets for Learning to Learn from
Few Examples", ICLR (Proto-MAML): nearest-prototype classification is a linear layer, row k
``2 c_k`` with bias ``-|c_k|²``, and that layer is a good start for a head fitted on the
support set. Here the head is fitted to its optimum rather than for a few steps: the support's
mean cross-entropy plus ``head_l2`` times the squared distance of the weights and biases from
the prototype layer is strictly convex, so L-BFGS (at most ``head_iterations``) heads for its one
minimum from any start. The same support set gives the same head (no random numbers; the same
arithmetic on the same CPU and thread count), a strong pull gives back the
prototype classifier, and a weak one a logistic regression on the support (SetFit's head,
Tunstall et al. 2022, over a frozen encoder).

Features are the embedding's direction times ``head_scale`` (the embedding's own norm plays
no part); the served logits are the head's divided by ``temperature`` (fitted on validation
episodes, so that the probabilities are calibrated; it never changes the argmax).

Adapted state: ``weight`` ``[ways, dim]``, ``bias`` ``[ways]`` and ``counts`` ``[ways]``. The
head depends on the whole support set, so a state cannot grow by added examples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from app.meta.algorithms.base import AdaptOptions
from app.meta.algorithms.hyperparameters import SoftmaxHeadHyperparameters
from app.meta.algorithms.protonet import ProtoNet
from app.meta.types import AdaptedState


def fit_softmax_head(z: Tensor, y: Tensor, ways: int, scale: float, l2: float, iterations: int
                     ) -> AdaptedState:
    """The head minimising the mean cross-entropy of ``(z, y)`` plus ``l2`` x the squared
    distance of its weights and biases from the prototype layer of ``z`` (where it starts).
    ``z`` are unit directions times ``scale``; the prototype layer is taken at temperature
    ``scale²``, i.e. its logits are those of the unit directions, ``2 u·p - |p|²``."""
    state = ProtoNet.prototypes_of(z, y, ways)
    protos = state["prototypes"]
    w0, b0 = 2 * protos / scale**2, -(protos * protos).sum(-1) / scale**2
    weight, bias = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    optimiser = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=iterations, history_size=20,
                                  line_search_fn="strong_wolfe")

    def objective() -> Tensor:
        optimiser.zero_grad()
        pull = ((weight - w0) ** 2).sum() + ((bias - b0) ** 2).sum()
        loss = F.cross_entropy(z @ weight.T + bias, y) + l2 * pull
        loss.backward()
        return loss

    with torch.enable_grad():
        optimiser.step(objective)
    return {"weight": weight.detach(), "bias": bias.detach(), "counts": state["counts"]}


class ProtoNetSoftmaxHead(ProtoNet):
    """ProtoNet refined by a softmax head fitted on the support set, in the request (no job):
    L-BFGS on a ``[ways, dim]`` layer converges in tens of milliseconds for ten classes on
    two cores (under 50 iterations), a few hundred for 150."""

    name = "protonet-softmax-head"
    hyperparameters = SoftmaxHeadHyperparameters
    family = "optimization"
    batchable = False  # an L-BFGS run per task
    extends = False  # the head depends on the whole support set

    def features(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        return F.normalize(self.embed(params, x), dim=-1) * float(self.hp.head_scale)

    def adapt_params(
        self, params: dict[str, Tensor], x: Tensor, y: Tensor, ways: int, steps: int
    ) -> AdaptedState:
        z = self.features(params, x).detach().clone()  # the head's inputs, outside autograd
        return self.fit(z, y, ways)

    def fit(self, z: Tensor, y: Tensor, ways: int) -> AdaptedState:
        return fit_softmax_head(z, y, ways, float(self.hp.head_scale), float(self.hp.head_l2),
                                int(self.hp.head_iterations))

    def predict_params(
        self, params: dict[str, Tensor], state: AdaptedState, x: Tensor
    ) -> Tensor:
        return self.head_logits(self.features(params, x), state)

    def head_logits(self, z: Tensor, state: AdaptedState) -> Tensor:
        return (z @ state["weight"].T + state["bias"]) / float(self.hp.temperature)

    def adapt_with_support_outputs(
        self, x: Tensor, y: Tensor, ways: int = 0, options: AdaptOptions | None = None
    ) -> tuple[AdaptedState, Tensor | None]:
        """One embedding of the support set for the head's fit and the support's outputs."""
        with torch.no_grad():
            z = self.features(self.frozen(), x).clone()
        state = {k: v.contiguous() for k, v in self.fit(z, y, ways).items()}
        with torch.no_grad():
            return state, self.head_logits(z, state)

    def can_extend(self, state: AdaptedState) -> bool:
        return False

    def extend(self, state: AdaptedState, x: Tensor, y: Tensor, ways: int) -> AdaptedState:
        raise NotImplementedError(f"{self.name} cannot add examples: its head depends on the whole support set")

    def memory_size(self, state: AdaptedState) -> int:
        return 0

    def meta_gradient(self, batch):  # noqa: ANN001, ANN201
        raise NotImplementedError("protonet-softmax-head is not meta-trained: it starts from a "
                                  "ProtoNet checkpoint (or the frozen encoder's identity adapter)")
