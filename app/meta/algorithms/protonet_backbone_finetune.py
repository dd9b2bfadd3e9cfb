"""Prototypical Networks over an ImageNet backbone whose last stage is fine-tuned per task.

Hu, Li, Stühmer, Kim, Hospedales (2022), "Pushing the Limits of Simple Pipelines for Few-Shot
Learning: External Data and Fine-Tuning Make a Difference" (P>M>F), CVPR: at deployment, the
meta-trained ProtoNet is fine-tuned on pseudo-episodes built from the new task's own support
set with data augmentation, then its prototypes are computed over the whole support set.

Here the network is the pinned EfficientNet-Lite (``image_backbone``) followed by the
meta-learned residual adapter of a photo ProtoNet. Its trunk stays frozen (computed once per
photo and view); the last ``tail_blocks`` MBConv blocks (default none), the 1x1 head
convolution with its batch norm's affine parameters, and the adapter are fine-tuned with Adam
for ``steps`` steps. Each step draws a pseudo-episode: every
class with at least two photos is split into a pseudo-support and a pseudo-query half; a class
with a single photo uses it as support and one of its augmented views as query; every example
is one of its ``views`` augmented versions (random crop of 50-100% of the area, mirror image,
brightness/contrast/saturation 0.8-1.2) or itself. Batch-norm layers keep their ImageNet
statistics (evaluation mode), so a prediction never depends on the other inputs of a batch.
The views, splits and crops come from a generator seeded by the support set itself: the same
support set always adapts to the same state.

Adapted state: the fine-tuned ``tail.*`` and ``encoder.*`` tensors, ``prototypes`` and
``counts`` (served probabilities use ProtoNet's temperature, T + s / shots).
The learner's inputs are preprocessed pixels ``[n, 3, S, S]`` (the ``photo-pixels`` codec).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from app.meta.algorithms.hyperparameters import BackboneFineTuneHyperparameters
from app.meta.algorithms.protonet_finetune import ProtoNetBackboneTuning, prototype_loss, support_seed
from app.meta.types import AdaptedState


class BackboneTail(nn.Module):
    """The last MBConv blocks, the head convolution and its batch norm, average-pooled."""

    def __init__(self, network: nn.Module, blocks: int) -> None:
        super().__init__()
        kept = list(network._blocks)[len(network._blocks) - blocks:]  # blocks = 0: none
        self.blocks = nn.ModuleList(copy.deepcopy(kept))
        self.conv_head = copy.deepcopy(network._conv_head)
        self.bn = copy.deepcopy(network._bn1)
        self.act = copy.deepcopy(network._swish)
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return self.act(self.bn(self.conv_head(x))).mean(dim=(2, 3))


def trunk_features(network: nn.Module, blocks: int, pixels: Tensor, batch_size: int = 4) -> Tensor:
    """The frozen part of the backbone: stem and all but the last ``blocks`` MBConv blocks."""
    out = []
    with torch.no_grad():
        for start in range(0, pixels.shape[0], batch_size):
            x = pixels[start:start + batch_size].contiguous(memory_format=torch.channels_last)
            x = network._swish(network._bn0(network._conv_stem(x)))
            for block in network._blocks[: len(network._blocks) - blocks]:
                x = block(x)
            out.append(x)
    return torch.cat(out)


def augment(pixels: Tensor, generator: torch.Generator) -> Tensor:
    """One random view of each preprocessed photo ``[n, 3, S, S]`` (values in [-1, 1])."""
    n, _, size, _ = pixels.shape
    views = []
    for i in range(n):
        area = float(torch.empty(1).uniform_(0.5, 1.0, generator=generator))
        side = max(8, round(size * area ** 0.5))
        top = int(torch.randint(0, size - side + 1, (1,), generator=generator))
        left = int(torch.randint(0, size - side + 1, (1,), generator=generator))
        x = pixels[i:i + 1, :, top:top + side, left:left + side]
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        if float(torch.rand(1, generator=generator)) < 0.5:
            x = x.flip(-1)
        x = (x + 1) / 2
        factors = torch.empty(3).uniform_(0.8, 1.2, generator=generator).tolist()
        x = x * factors[0]
        x = (x - x.mean()) * factors[1] + x.mean()
        grey = x.mean(dim=1, keepdim=True)
        x = (x - grey) * factors[2] + grey
        views.append(x.clamp(0, 1) * 2 - 1)
    return torch.cat(views)


class ProtoNetBackboneFineTune(ProtoNetBackboneTuning):
    """Photo ProtoNet with per-task fine-tuning of the backbone's last stage and the adapter
    (slow: served as an asynchronous job). Not meta-trained itself: it starts from a photo
    ProtoNet's adapter and the pinned backbone's ImageNet weights."""

    name = "protonet-backbone-finetune"
    hyperparameters = BackboneFineTuneHyperparameters

    def __init__(self, model, task_type: str = "classification", **hparams) -> None:
        from app.meta.image_backbone import load_image_backbone

        super().__init__(model, task_type, **hparams)
        self.tail_blocks = self.hp.tail_blocks
        self.views = self.hp.views
        # a copy of its own: this learner may move to a GPU while the codecs embed on the CPU
        self.network = copy.deepcopy(load_image_backbone(self.hp.image_backbone).network)
        self.tail = BackboneTail(self.network, self.tail_blocks)

    def _tail_params(self) -> dict[str, Tensor]:
        return {f"tail.{k}": v.detach() for k, v in self.tail.named_parameters()}

    def embed_pixels(self, params: dict[str, Tensor], trunk: Tensor) -> Tensor:
        """Tail (with ``tail.*`` from ``params``), L2 normalisation, adapter (``encoder.*``)."""
        tail = {k[len("tail."):]: v for k, v in params.items() if k.startswith("tail.")}
        pooled = functional_call(self.local("tail"), tail, (trunk,))
        return self.embed({k: v for k, v in params.items() if k.startswith("encoder.")},
                          F.normalize(pooled, dim=-1))

    def adapt_params(self, params: dict[str, Tensor], x: Tensor, y: Tensor, ways: int, steps: int,
                     progress=None) -> AdaptedState:
        x = x.clone()  # inputs decoded under inference_mode cannot enter autograd as they are
        generator = torch.Generator().manual_seed(support_seed(x, y))
        weights = {**{k: v.detach().clone() for k, v in params.items()},
                   **{k: v.clone() for k, v in self._tail_params().items()}}
        trunk = trunk_features(self.network, self.tail_blocks, x)
        if steps > 0:
            views = self.views
            augmented = [trunk_features(self.network, self.tail_blocks, augment(x, generator))
                         for _ in range(views)]
            versions = torch.stack([trunk, *augmented], 1)  # [n, views + 1, C, h, w]
            trainable = {k: v.requires_grad_(True) for k, v in weights.items()}
            optimiser = torch.optim.Adam(trainable.values(), lr=float(self.hp.inner_lr))
            temperature = float(self.hp.loss_temperature)
            labels = y.cpu()  # the episode's bookkeeping on the CPU, its tensors where x is
            by_class = [torch.nonzero(labels == c).flatten() for c in range(ways)]
            for step in range(steps):
                s_rows, s_version, q_rows, q_version, q_y = [], [], [], [], []
                for c, rows in enumerate(by_class):
                    if rows.numel() == 0:
                        continue
                    order = rows[torch.randperm(rows.numel(), generator=generator)]
                    half = order.numel() // 2
                    support = order[half:] if half else order
                    query = order[:half] if half else order
                    s_rows.append(support)
                    q_rows.append(query)
                    q_y.append(torch.full((query.numel(),), c, dtype=torch.long))
                    s_version.append(torch.randint(views + 1, (support.numel(),), generator=generator))
                    # a single photo is queried through an augmented view, never through itself
                    low = 0 if half else 1
                    q_version.append(torch.randint(low, views + 1, (query.numel(),), generator=generator))
                s_rows, q_rows = torch.cat(s_rows), torch.cat(q_rows)
                batch = torch.cat([versions[s_rows, torch.cat(s_version)], versions[q_rows, torch.cat(q_version)]])
                with torch.enable_grad():
                    z = self.embed_pixels(trainable, batch)
                    n = s_rows.numel()
                    loss = prototype_loss(z[:n], labels[s_rows].to(z.device), z[n:],
                                          torch.cat(q_y).to(z.device), ways, temperature)
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                optimiser.step()
                if progress is not None:
                    progress((step + 1) / steps)
        with torch.no_grad():
            state = {k: v.detach() for k, v in weights.items()}
            state.update(self.prototypes_of(self.embed_pixels(state, trunk), y, ways))
        return state

    def predict_params(self, params: dict[str, Tensor], state: AdaptedState, x: Tensor) -> Tensor:
        trunk = trunk_features(self.network, self.tail_blocks, x)
        return self.logits(self.embed_pixels(state, trunk), state["prototypes"], state["counts"])

    def meta_gradient(self, batch):  # noqa: ANN001, ANN201
        raise NotImplementedError("protonet-backbone-finetune is not meta-trained: it starts from a "
                                  "photo ProtoNet's adapter (train photo-protonet instead)")
