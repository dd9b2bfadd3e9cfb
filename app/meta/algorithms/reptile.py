"""Reptile: first-order meta-learning by moving the initialisation towards adapted weights.

Nichol, Achiam, Schulman (2018), "On First-Order Meta-Learning Algorithms",
arXiv:1803.02999. For each task, run ``inner_steps`` of SGD from θ on the task's examples to
get φ; the outer update is θ ← θ + ε (mean φ − θ). The trainer's optimiser receives
``θ − mean φ`` as the "gradient", so plain SGD with learning rate ε is exactly Reptile (Adam
is the paper's variant for Omniglot). Adaptation at serving time is the same SGD.

Adapted state: every weight of the network.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import vmap

from app.meta.algorithms.maml import MAML
from app.meta.types import TaskBatch


class Reptile(MAML):
    """SGD adaptation; outer step towards the adapted weights. hparams: inner_lr, inner_steps."""

    name = "reptile"

    def meta_gradient(self, batch: TaskBatch) -> tuple[float, dict[str, Tensor]]:
        params = self.frozen()
        steps = self.train_steps()

        def one_task(sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor):
            x, y = torch.cat([sx, qx]), torch.cat([sy, qy])
            fast = self.adapt_params(params, sx, sy, batch.ways, steps)
            query_loss = self.loss(self.forward(fast, qx), qy)  # reported, not optimised
            return self.adapt_params(params, x, y, batch.ways, steps), query_loss

        fast, losses = vmap(one_task, randomness="same")(
            batch.support_x, batch.support_y, batch.query_x, batch.query_y
        )
        grads = {}
        for k, theta in params.items():
            target = fast[k].mean(0)
            if target.shape != theta.shape:  # a repeated classification head: average its rows
                target = target.mean(0).reshape(theta.shape)
            grads[k] = theta - target
        return float(losses.mean()), grads
