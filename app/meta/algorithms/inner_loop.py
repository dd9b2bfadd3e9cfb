"""Gradient descent on a support set.

Shared by MAML, Meta-SGD, ANIL and Reptile. Differentiable through the steps (second-order
MAML) unless ``first_order`` is set, in which case each step's gradient is detached so the
outer gradient is the first-order approximation (Finn et al., 2017, section 5.2).

Two exact paths: ``torch.func.grad`` whenever a function transform is active (``vmap`` over
tasks, meta-training's ``grad``) or a starting tensor carries an outer graph; otherwise — one
task adapted for serving — plain ``torch.autograd.grad`` on leaf tensors, which computes the
same gradients at about half the per-step overhead on CPU (sinusoid MLP, 10 steps, 2.6 ms vs
5.1 ms per task).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import Tensor
from torch.func import grad, vmap

LossFn = Callable[[dict[str, Tensor]], Tensor]
TaskLossFn = Callable[[dict[str, Tensor], Tensor, Tensor], Tensor]  # (params, x, y) of one task

_TRACE: ContextVar[list[dict[str, Tensor]] | None] = ContextVar("inner_loop_trace", default=None)


@contextmanager
def recording_steps() -> Iterator[list[dict[str, Tensor]]]:
    """Collect the adapted tensors before the first step and after every step of the plain
    (single-task, serving) path: one adaptation of K steps yields K + 1 states, so the
    outcome of every step count up to K costs one adaptation (the step-strategy model's
    features and training data)."""
    trace: list[dict[str, Tensor]] = []
    token = _TRACE.set(trace)
    try:
        yield trace
    finally:
        _TRACE.reset(token)


def gradient_descent(
    loss_fn: LossFn,
    fast: dict[str, Tensor],
    lrs: dict[str, Tensor] | float,
    steps: int,
    first_order: bool = False,
) -> dict[str, Tensor]:
    """``steps`` SGD steps on ``loss_fn`` from ``fast``; ``lrs`` scalar or per tensor."""
    if plain_autograd_applies(fast, lrs):
        return autograd_descent(loss_fn, fast, lrs, steps)
    step_fn = grad(loss_fn)
    for _ in range(steps):
        grads = step_fn(fast)
        if first_order:
            grads = {k: g.detach() for k, g in grads.items()}
        fast = {
            k: fast[k] - (lrs[k] if isinstance(lrs, dict) else lrs) * grads[k] for k in fast
        }
    return fast


def plain_autograd_applies(fast: dict[str, Tensor], lrs: dict[str, Tensor] | float) -> bool:
    """No function transform is active and nothing needs an outer graph (serving one task)."""
    if torch._C._functorch.peek_interpreter_stack() is not None:
        return False
    tensors = [*fast.values(), *(lrs.values() if isinstance(lrs, dict) else [])]
    return not any(t.requires_grad for t in tensors)


def autograd_descent(loss_fn: LossFn, fast: dict[str, Tensor], lrs: dict[str, Tensor] | float,
                     steps: int) -> dict[str, Tensor]:
    """The same steps with ``torch.autograd.grad`` on leaf tensors (no outer graph), updated
    in place by one fused ``_foreach`` operation per step (instead of a subtraction, a
    product and a new leaf per tensor: 10-20% of a small network's step on the CPU)."""
    names = list(fast)
    current = [fast[k].detach().clone().requires_grad_(True) for k in names]  # never alias θ
    per_tensor = [lrs[k] for k in names] if isinstance(lrs, dict) else None
    trace = _TRACE.get()
    if trace is not None:
        trace.append({k: v.detach().clone() for k, v in zip(names, current, strict=True)})
    for _ in range(steps):
        with torch.enable_grad():
            grads = torch.autograd.grad(loss_fn(dict(zip(names, current, strict=True))), current,
                                        allow_unused=True)
        used = [i for i, g in enumerate(grads) if g is not None]
        with torch.no_grad():  # the step's graph is freed: updating the leaves is safe
            if per_tensor is None:
                torch._foreach_add_([current[i] for i in used], [grads[i] for i in used],
                                    alpha=-lrs)
            else:
                torch._foreach_addcmul_([current[i] for i in used], [per_tensor[i] for i in used],
                                        [grads[i] for i in used], value=-1.0)
        if trace is not None:
            trace.append({k: v.detach().clone() for k, v in zip(names, current, strict=True)})
    return {k: v.detach() for k, v in zip(names, current, strict=True)}


def descend_tasks(task_loss: TaskLossFn, fast: dict[str, Tensor], lrs: dict[str, Tensor] | float,
                  steps: int, xs: Tensor, ys: Tensor) -> dict[str, Tensor]:
    """``steps`` SGD steps for many tasks of one shape at once, from the same start ``fast``
    (serving: no outer graph): every task's tensors stacked on dim 0, one vmapped forward per
    step, and plain autograd on the sum of the tasks' losses, whose gradient with respect to
    task ``b``'s rows is exactly task ``b``'s own gradient. Replaces vmapping functorch's
    ``grad`` over whole adaptations: about 30% less CPU for a batch of sinusoid tasks. ``lrs``
    (a scalar or unbatched per-tensor rates) apply to every task."""
    stacked = {k: v.unsqueeze(0).expand(xs.shape[0], *v.shape) for k, v in fast.items()}
    return descend_tasks_from(task_loss, stacked, lrs, steps, xs, ys)


def descend_tasks_from(task_loss: TaskLossFn, stacked: dict[str, Tensor],
                       lrs: dict[str, Tensor] | float, steps: int, xs: Tensor, ys: Tensor
                       ) -> dict[str, Tensor]:
    """``descend_tasks`` from a start of each task's own (``stacked`` on dim 0, as ``xs``)."""
    per_task = vmap(task_loss)
    return autograd_descent(lambda params: per_task(params, xs, ys).sum(), stacked, lrs, steps)
