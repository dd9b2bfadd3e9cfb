"""Prototypical Networks with per-task fine-tuning of the meta-learned embedding.

Hu, Li, Stühmer, Kim, Hospedales (2022), "Pushing the Limits of Simple Pipelines for Few-Shot
Learning: External Data and Fine-Tuning Make a Difference" (P>M>F), CVPR: a ProtoNet
meta-trained episodically is, at deployment, fine-tuned on pseudo-episodes drawn from the
new task's own support set, starting from the meta-learned initialisation.

Adaptation runs ``steps`` Adam steps on the embedding (the meta-learned adapter): each step
splits every class with at least two shots into a pseudo-support half and a pseudo-query
half, builds prototypes from the first and takes the cross-entropy of the second. The split
is drawn from a generator seeded by the support set itself, so the same support set always
adapts to the same state. Prototypes are then computed over the whole support set with the
fine-tuned embedding. A task whose classes all have a single example has nothing to hold out
and is adapted exactly as by :class:`ProtoNet`.

Adapted state: the fine-tuned ``encoder.*`` tensors and ``prototypes`` ``[ways, dim]``.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import Tensor

from app.meta.algorithms.base import AdaptOptions
from app.meta.algorithms.hyperparameters import FineTuneHyperparameters
from app.meta.algorithms.protonet import ProtoNet
from app.meta.types import AdaptedState


def support_seed(x: Tensor, y: Tensor) -> int:
    digest = hashlib.sha256(x.detach().cpu().numpy().tobytes() + y.cpu().numpy().tobytes())
    return int.from_bytes(digest.digest()[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def prototypes(z: Tensor, y: Tensor, ways: int) -> Tensor:
    onehot = F.one_hot(y, ways).to(z.dtype)
    return (onehot.T @ z) / onehot.sum(0).clamp_min(1.0)[:, None]


def squared_distances(z: Tensor, protos: Tensor) -> Tensor:
    return (z * z).sum(-1, keepdim=True) - 2 * z @ protos.T + (protos * protos).sum(-1)


def prototype_loss(z_support: Tensor, y_support: Tensor, z_query: Tensor, y_query: Tensor, ways: int,
                   temperature: float) -> Tensor:
    """Cross-entropy of the queries against the support's prototypes (a pseudo-episode's loss)."""
    logits = -squared_distances(z_query, prototypes(z_support, y_support, ways)) / temperature
    return F.cross_entropy(logits, y_query)


class ProtoNetFineTune(ProtoNet):
    """ProtoNet whose adaptation fine-tunes the embedding on the support set (slow: served
    as an asynchronous job). Not meta-trained itself: it starts from a ProtoNet checkpoint."""

    name = "protonet-finetune"
    hyperparameters = FineTuneHyperparameters
    family = "optimization"
    has_steps = True
    batchable = False  # per-task optimiser state and random splits: one task at a time
    seeds_from_support = True  # the pseudo-episodes' generator (support_seed)
    extends = False  # the fine-tuned embedding depends on the whole support set

    def train_steps(self) -> int:
        return self.hp.eval_steps or 0

    def adapt_params(
        self, params: dict[str, Tensor], x: Tensor, y: Tensor, ways: int, steps: int,
        progress=None,
    ) -> AdaptedState:
        encoder = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        x = x.clone()  # inputs encoded under inference_mode cannot enter autograd as they are
        generator = torch.Generator().manual_seed(support_seed(x, y))
        by_class = [torch.nonzero(y == c).flatten() for c in range(ways)]
        splittable = [rows for rows in by_class if rows.numel() >= 2]
        # the loss's temperature: the one the steps were chosen with, even when the served
        # temperature (calibration of the outputs) was refitted afterwards
        temperature = float(self.hp.loss_temperature)
        if steps > 0 and splittable:
            optimiser = torch.optim.Adam(encoder.values(), lr=float(self.hp.inner_lr))
            for step in range(steps):
                support_rows, query_rows, query_y = [], [], []
                for c, rows in enumerate(by_class):
                    if rows.numel() < 2:
                        support_rows.append(rows)
                        continue
                    order = rows[torch.randperm(rows.numel(), generator=generator)]
                    half = order.numel() // 2
                    query_rows.append(order[:half])
                    support_rows.append(order[half:])
                    query_y.append(torch.full((half,), c, device=y.device))
                s_rows, q_rows = torch.cat(support_rows), torch.cat(query_rows)
                with torch.enable_grad():
                    z = self.embed(encoder, x)
                    loss = prototype_loss(z[s_rows], y[s_rows], z[q_rows], torch.cat(query_y), ways, temperature)
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                optimiser.step()
                if progress is not None:
                    progress((step + 1) / steps)
        with torch.no_grad():
            state = {k: v.detach() for k, v in encoder.items()}  # keys "encoder.*"
            state["prototypes"] = prototypes(self.embed(state, x), y, ways)
        return state

    def adapt(self, x: Tensor, y: Tensor, ways: int = 0, options: AdaptOptions | None = None
              ) -> AdaptedState:
        progress = options.progress if options is not None else None
        state = self.adapt_params(self.frozen(), x, y, ways, self.resolve_steps(options, ways), progress)
        return {k: v.detach().contiguous() for k, v in state.items()}

    def predict_params(
        self, params: dict[str, Tensor], state: AdaptedState, x: Tensor
    ) -> Tensor:
        z = self.embed({k: v for k, v in state.items() if k.startswith("encoder.")}, x)
        return -squared_distances(z, state["prototypes"]) / float(self.hp.temperature)

    def meta_gradient(self, batch):  # noqa: ANN001, ANN201
        raise NotImplementedError("protonet-finetune is not meta-trained: it starts from a "
                                  "ProtoNet checkpoint (train text-protonet instead)")


class ProtoNetBackboneTuning(ProtoNetFineTune):
    """Base of the ProtoNets that fine-tune part of a pretrained backbone per task (photos: its
    head convolution; text: the encoder's top layers). Their states hold the tuned tensors,
    ``prototypes`` and ``counts``, yet cannot grow (the tuning depends on the whole support
    set), and the support set is not run through the backbone a second time for its outputs."""

    def adapt_with_support_outputs(self, x: Tensor, y: Tensor, ways: int = 0,
                                   options: AdaptOptions | None = None) -> tuple[AdaptedState, Tensor | None]:
        return self.adapt(x, y, ways, options), None

    def can_extend(self, state: AdaptedState) -> bool:
        return False
