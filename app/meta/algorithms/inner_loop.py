"""Gradient descent on a support set, written with ``torch.func.grad``.

Shared by MAML, Meta-SGD, ANIL and Reptile. Differentiable through the steps (second-order
MAML) unless ``first_order`` is set, in which case each step's gradient is detached so the
outer gradient is the first-order approximation (Finn et al., 2017, section 5.2).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor
from torch.func import grad

LossFn = Callable[[dict[str, Tensor]], Tensor]


def gradient_descent(
    loss_fn: LossFn,
    fast: dict[str, Tensor],
    lrs: dict[str, Tensor] | float,
    steps: int,
    first_order: bool = False,
) -> dict[str, Tensor]:
    """``steps`` SGD steps on ``loss_fn`` from ``fast``; ``lrs`` scalar or per tensor."""
    step_fn = grad(loss_fn)
    for _ in range(steps):
        grads = step_fn(fast)
        if first_order:
            grads = {k: g.detach() for k, g in grads.items()}
        fast = {
            k: fast[k] - (lrs[k] if isinstance(lrs, dict) else lrs) * grads[k] for k in fast
        }
    return fast
