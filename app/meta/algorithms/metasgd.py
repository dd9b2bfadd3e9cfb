"""Meta-SGD: learning the initialisation *and* a learning rate per parameter.

Li, Zhou, Chen, Li (2017), "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning",
arXiv:1707.09835. Like MAML, but the inner step is θ' = θ - α ⊙ ∇L_support(θ) with α a
learned tensor of the same shape as θ (the update's direction and size are both learned).
The meta-parameters are the network's weights plus ``lr.<name>`` for each of them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from app.meta.algorithms.maml import MAML
from app.meta.backbones import expand_head

LR_PREFIX = "lr."


class MetaSGD(MAML):
    """MAML with learned per-parameter inner learning rates. hparams: inner_lr (initial α)."""

    name = "metasgd"

    def __init__(self, model: nn.Module, task_type: str, **hparams: object) -> None:
        super().__init__(model, task_type, **hparams)
        init = float(self.hp.inner_lr)
        for k, v in list(self.params.items()):
            self.params[LR_PREFIX + k] = torch.full_like(v.detach(), init).requires_grad_(True)

    def weights(self, params: dict[str, Tensor]) -> dict[str, Tensor]:
        return {k: v for k, v in params.items() if not k.startswith(LR_PREFIX)}

    def inner_lrs(self, params: dict[str, Tensor], fast: dict[str, Tensor]) -> dict[str, Tensor]:
        lrs = {k[len(LR_PREFIX) :]: v for k, v in params.items() if k.startswith(LR_PREFIX)}
        ways = fast["head.weight"].shape[0] if self.task_type == "classification" else 0
        return expand_head(lrs, ways)
