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

With ``label_names``, the classes' names (decoded like the support's inputs: for text, the
label ``"alarm_query"`` read as the sentence "alarm query") join the support as one example each,
as in work that reads label semantics (e.g. Mueller et al. 2022, "Label Semantic Aware
Pre-training for Few-shot Text Classification"), but only when they are informative: when the
prototype classifier puts clearly more names in their own class than chance would
(``names_informative``). Labels such as ``"class_017"`` are then left out, and the head is the
one fitted on the support alone.

Adapted state: ``weight`` ``[ways, dim]``, ``bias`` ``[ways]`` and ``counts`` ``[ways]`` (the
support's examples per class; a name is not counted). The head depends on the whole support
set, so a state cannot grow by added examples.
"""

from __future__ import annotations

import math

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


def names_informative(names: Tensor, z: Tensor, y: Tensor, ways: int) -> bool:
    """Whether the classes' names (features ``names``, row k for class k) say something about
    the support ``(z, y)``: the nearest-prototype classifier puts at least a quarter of them in
    their own class, and at least three standard deviations more than chance would (an
    uninformative name lands in its own class with probability 1/ways: one name expected, with
    variance (ways - 1) / ways). Two or three classes never qualify (chance alone could place
    every name)."""
    protos = ProtoNet.prototypes_of(z, y, ways)["prototypes"]
    own = (2 * names @ protos.T - (protos * protos).sum(-1)).argmax(-1) == torch.arange(ways, device=names.device)
    return int(own.sum()) >= max(ways / 4, 1 + 3 * math.sqrt((ways - 1) / ways))


def join_names(z: Tensor, y: Tensor, ways: int, names: Tensor | None) -> tuple[Tensor, Tensor]:
    """The support ``(z, y)`` with the classes' names as one more example each where they are
    informative (``names_informative``); the support itself otherwise."""
    if names is None or not names_informative(names, z, y, ways):
        return z, y
    return torch.cat([z, names]), torch.cat([y, torch.arange(ways, device=y.device)])


class ProtoNetSoftmaxHead(ProtoNet):
    """ProtoNet refined by a softmax head fitted on the support set, in the request (no job):
    L-BFGS on a ``[ways, dim]`` layer converges in tens of milliseconds for ten classes on
    two cores (under 50 iterations), a few hundred for 150."""

    name = "protonet-softmax-head"
    hyperparameters = SoftmaxHeadHyperparameters
    family = "optimization"
    batchable = False  # an L-BFGS run per task
    extends = False  # the head depends on the whole support set

    @property
    def reads_label_names(self) -> bool:  # type: ignore[override]
        return bool(self.hp.label_names)

    def features(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        return F.normalize(self.embed(params, x), dim=-1) * float(self.hp.head_scale)

    def adapt_params(
        self, params: dict[str, Tensor], x: Tensor, y: Tensor, ways: int, steps: int
    ) -> AdaptedState:
        z = self.features(params, x).detach().clone()  # the head's inputs, outside autograd
        return self.fit(z, y, ways)

    def fit(self, z: Tensor, y: Tensor, ways: int, names: Tensor | None = None) -> AdaptedState:
        """The head on the support's features ``z``; with the names' features ``names`` too,
        as one more example per class, where they are informative."""
        joined_z, joined_y = join_names(z, y, ways, names)
        state = fit_softmax_head(joined_z, joined_y, ways, float(self.hp.head_scale), float(self.hp.head_l2),
                                 int(self.hp.head_iterations))
        if joined_y is not y:  # the counts are the support's: a name is not an example to keep
            state["counts"] = torch.bincount(y, minlength=ways).to(z.dtype)
        return state

    def names_features(self, params: dict[str, Tensor], options: AdaptOptions | None) -> Tensor | None:
        """The label names' features when this version reads them and the request has them."""
        if not self.hp.label_names or options is None or options.label_inputs is None:
            return None
        with torch.no_grad():
            return self.features(params, options.label_inputs).clone()

    def adapt(self, x: Tensor, y: Tensor, ways: int = 0, options: AdaptOptions | None = None
              ) -> AdaptedState:
        return self.adapt_with_support_outputs(x, y, ways, options)[0]

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
        params = self.frozen()
        with torch.no_grad():
            z = self.features(params, x).clone()
        names = self.names_features(params, options)
        state = {k: v.contiguous() for k, v in self.fit(z, y, ways, names).items()}
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
