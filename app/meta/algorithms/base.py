"""The interface every meta-learner implements, and the pieces they share.

A meta-learner holds *meta-parameters* (``self.params``: a dict of leaf tensors that the
outer loop trains). Everything else is a pure function of them:

* ``adapt(x, y, ways, options) -> AdaptedState``: clone, adapt on the support set;
* ``predict(state, x) -> Tensor``: logits (classification) or values (regression);
* ``adapt_batch`` / ``predict_batch``: the same for many tasks in one ``vmap``-ed call;
* ``meta_gradient(batch) -> (loss, grads)``: one outer step's gradient for the trainer.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from app.meta.algorithms.hyperparameters import Hyperparameters
from app.meta.backbones import with_prefix
from app.meta.task_types import task_type_for
from app.meta.types import AdaptedState, TaskBatch


@dataclass(frozen=True)
class AdaptOptions:
    """Per-request adaptation options; ``None`` means the meta-learner's default."""

    steps: int | None = None
    # called with the fraction done by learners whose adaptation is long (fine-tuning)
    progress: Callable[[float], None] | None = None
    # the class labels' names decoded like the support's inputs (row k: class k), for learners
    # that read them (``reads_label_names``); None where the labels say nothing in this kind
    label_inputs: Tensor | None = None


def copy_sharing_parameters(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` (its own submodules, attributes and buffers) whose parameters
    are the template's tensors themselves, not copies."""
    return copy.deepcopy(module, memo={id(p): p for p in module.parameters()})


class MetaLearner(ABC):
    """Base class: a backbone, its meta-parameters and the task type."""

    name: ClassVar[str]
    family: ClassVar[str]  # "optimization" | "metric" | "parameter-generating"
    has_steps: ClassVar[bool] = False
    batchable: ClassVar[bool] = True  # adapt_batch (vmap) gives the same states as adapt
    gives_std: ClassVar[bool] = False  # predict_with_std gives a predictive standard deviation
    continues: ClassVar[bool] = False  # adapt_from carries on from a partly adapted state
    extends: ClassVar[bool] = False  # extend adds examples exactly (memory-based learners)
    reads_label_names: bool = False  # adapt takes the labels' names as inputs (AdaptOptions)
    # adapted once at start-up so that the first client does not pay one-off costs; a learner
    # whose first task loads large weights (a job of seconds anyway) leaves them unloaded
    warm_at_start: ClassVar[bool] = True
    # its adaptation draws random numbers seeded by the support tensor's bits: the support is
    # decoded afresh, in one batch, never from embeddings another batch computed (their last
    # bits differ, and so would the model)
    seeds_from_support: ClassVar[bool] = False
    hyperparameters: ClassVar[type[Hyperparameters]] = Hyperparameters  # what it reads, typed

    def __init__(self, model: nn.Module, task_type: str, **hparams: Any) -> None:
        self.task = task_type_for(task_type)  # raises on an unknown task type
        self.model = model
        self.task_type = task_type
        self.hp = self.hyperparameters.of(self.name, hparams)
        self.params: dict[str, Tensor] = {
            k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()
        }
        self._local = threading.local()
        self._param_names = {k for k, _ in model.named_parameters()}
        self._encoder_names = {k for k in self._param_names if k.startswith("encoder.")}

    @property
    def device(self) -> torch.device:
        """Where the meta-parameters live (and so where adaptation and prediction run)."""
        return next(iter(self.params.values())).device

    def to(self, device: str | torch.device) -> MetaLearner:
        """Move the meta-parameters and every module of this learner to ``device``.

        On a GPU, TensorFloat-32 is switched off for matrix products and convolutions (PyTorch
        allows it for cuDNN convolutions by default): its 10-bit mantissa moved adapted
        weights by up to 0.36 after ten MAML/ANIL steps on an H200, so a GPU deployment
        would serve other predictions than the CPU one for the same support set."""
        device = torch.device(device)
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        for value in vars(self).values():
            if isinstance(value, nn.Module):
                value.to(device)
        self.params = {k: v.detach().to(device).requires_grad_(True) for k, v in self.params.items()}
        self._local = threading.local()  # per-thread module copies were made on the old device
        return self

    def local(self, attribute: str = "model") -> nn.Module:
        """This thread's copy of a module for ``functional_call``.

        ``functional_call`` swaps tensors into the module's attributes for the duration of the
        call, so one module object must never be used by two threads at once. The copies share
        the template's parameters (read, never written: the calls pass their own), so a thread
        costs the module's structure and buffers, not its weights (57 MB for two mpnet layers).
        """
        modules = self._local.__dict__.setdefault("modules", {})
        if attribute not in modules:
            modules[attribute] = copy_sharing_parameters(getattr(self, attribute))
        return modules[attribute]

    # ----- the serving interface -------------------------------------------------------
    @abstractmethod
    def adapt_params(
        self, params: dict[str, Tensor], x: Tensor, y: Tensor, ways: int, steps: int
    ) -> AdaptedState:
        """Adapt one task as a pure function of the meta-parameters (differentiable)."""

    @abstractmethod
    def predict_params(
        self, params: dict[str, Tensor], state: AdaptedState, x: Tensor
    ) -> Tensor:
        """Outputs for one task's inputs given meta-parameters and an adapted state."""

    def train_steps(self) -> int:
        """Inner steps during meta-training."""
        return self.hp.inner_steps

    def default_steps(self) -> int:
        """Inner steps at adaptation time unless a request asks otherwise."""
        return self.hp.eval_steps if self.hp.eval_steps is not None else self.train_steps()

    def default_steps_for(self, ways: int) -> int:
        """Inner steps for a task of ``ways`` classes (0: not classification) unless a request
        asks otherwise: ``default_steps()`` unless the learner scales its steps with the classes."""
        return self.default_steps()

    @property
    def steps_rule(self) -> str | None:
        """How ``default_steps_for`` depends on the classes, in words (None: it does not)."""
        return None

    def resolve_steps(self, options: AdaptOptions | None, ways: int = 0) -> int:
        if options is None or options.steps is None:
            return self.default_steps_for(ways)
        return int(options.steps)

    def frozen(self) -> dict[str, Tensor]:
        return {k: v.detach() for k, v in self.params.items()}

    def adapt(
        self, x: Tensor, y: Tensor, ways: int = 0, options: AdaptOptions | None = None
    ) -> AdaptedState:
        """Adapt to one task's support set; the result holds no autograd history."""
        with self._no_grad_unless_stepping():
            state = self.adapt_params(self.frozen(), x, y, ways, self.resolve_steps(options, ways))
        return {k: v.detach().contiguous() for k, v in state.items()}

    def adapt_with_support_outputs(
        self, x: Tensor, y: Tensor, ways: int = 0, options: AdaptOptions | None = None
    ) -> tuple[AdaptedState, Tensor | None]:
        """``adapt``, and where a family computes them on the way, the adapted state's outputs
        on the support set (exactly ``predict(state, x)``), which spares the service's report
        a second forward pass; None where it does not."""
        return self.adapt(x, y, ways, options), None

    def adapt_from(self, state: AdaptedState, x: Tensor, y: Tensor, ways: int, steps: int) -> AdaptedState:
        """``steps`` more inner steps from ``state``, an adaptation of this support set stopped
        early: what adapting with all the steps at once gives (families with ``continues``)."""
        raise NotImplementedError(f"{self.name} cannot continue an adaptation")

    def adapt_batch_from(self, states: AdaptedState, xs: Tensor, ys: Tensor, ways: int,
                         steps: int) -> AdaptedState:
        """``adapt_from`` for many tasks of one shape at once (states and tasks on dim 0)."""
        raise NotImplementedError(f"{self.name} cannot continue an adaptation")

    def _no_grad_unless_stepping(self) -> contextlib.AbstractContextManager:
        """Serving adaptation of a family without inner steps is a forward pass: run it without
        autograd's bookkeeping, as prediction does (the same values; on Conv4 it also takes the
        vectorised pooling: ProtoNet 5-way 5-shot 17.3 -> 7 ms on one thread). Families with
        steps need autograd for their inner loop."""
        return contextlib.nullcontext() if self.has_steps else torch.no_grad()

    def predict(self, state: AdaptedState, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.predict_params(self.frozen(), state, x)

    def extend(self, state: AdaptedState, x: Tensor, y: Tensor, ways: int) -> AdaptedState:
        """The state adapted to its support set plus (x, y): only where that is exact."""
        raise NotImplementedError(f"{self.name} cannot add examples to an adapted state")

    def can_extend(self, state: AdaptedState) -> bool:
        """Whether this particular state can grow (a learner may have kept less before)."""
        return self.extends

    def memory_size(self, state: AdaptedState) -> int:
        """Examples held by a memory-based state."""
        return 0

    def predict_with_std(self, state: AdaptedState, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``predict``'s outputs and, where the family has one, the predictive standard
        deviation of each, from the same forward pass."""
        return self.predict(state, x), None

    def adapt_batch(
        self, xs: Tensor, ys: Tensor, ways: int = 0, options: AdaptOptions | None = None
    ) -> AdaptedState:
        """Adapt many tasks of one shape at once (tasks on dim 0; see ``adapt_params_batch``)."""
        steps = self.resolve_steps(options, ways)
        with self._no_grad_unless_stepping():
            states = self.adapt_params_batch(self.frozen(), xs, ys, ways, steps)
        return {k: v.detach().contiguous() for k, v in states.items()}

    def adapt_params_batch(
        self, params: dict[str, Tensor], xs: Tensor, ys: Tensor, ways: int, steps: int
    ) -> AdaptedState:
        """``adapt_params`` for tasks stacked on dim 0 (serving: ``params`` carry no graph):
        ``vmap`` over tasks unless a family has a cheaper exact form."""
        fn = vmap(lambda x, y: self.adapt_params(params, x, y, ways, steps), randomness="same")
        return fn(xs, ys)

    def predict_batch(self, states: AdaptedState, xs: Tensor) -> Tensor:
        """Predict for many (state, inputs) pairs at once; states stacked on dim 0."""
        params = self.frozen()
        with torch.no_grad():
            return vmap(lambda s, x: self.predict_params(params, s, x))(states, xs)

    def initial_state(self, ways: int) -> AdaptedState | None:
        """The state before any adaptation, where that is meaningful (for loss reports)."""
        return None

    # ----- losses ----------------------------------------------------------------------
    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        return self.task.loss(outputs, targets)

    def inner_loss_weight(self, n_support: int, ways: int) -> float:
        """Weight of the mean support loss in inner steps (``inner_loss_scale``).

        * ``"mean"`` (default): weight 1, the plain mean over support examples.
        * ``"ways"``: ``ways / reference_ways``. The gradient that reaches one class's head row
          under a mean loss shrinks as 1/ways, so this keeps a step's size per class what it
          was in meta-training whatever the number of ways, while more shots only average
          more examples (a less noisy gradient of the same size): more examples never mean a
          larger step.
        * ``"support"``: ``n / reference_support`` (version 1.0.0 of the Omniglot learners):
          a sum over examples; its step grows with the number of shots and diverges at 5
          shots. Kept only so that those versions keep adapting exactly as they did.

        At the trained task shape every rule's weight is exactly 1.
        """
        scale = getattr(self.hp, "inner_loss_scale", "mean")
        if scale == "mean":
            return 1.0
        if scale == "ways":
            return ways / float(self.hp.reference_ways)
        if scale == "support":
            return n_support / float(self.hp.reference_support)
        raise ValueError(f"unknown inner_loss_scale {scale!r}; known: mean, ways, support")

    def support_loss(self, state: AdaptedState, x: Tensor, y: Tensor) -> float:
        return float(self.loss(self.predict(state, x), y))

    # ----- meta-training ---------------------------------------------------------------
    def task_query_loss(self, params: dict[str, Tensor], sx, sy, qx, qy, ways: int) -> Tensor:
        state = self.adapt_params(params, sx, sy, ways, self.train_steps())
        return self.loss(self.predict_params(params, state, qx), qy)

    def meta_gradient(self, batch: TaskBatch) -> tuple[float, dict[str, Tensor]]:
        """Mean query loss over the batch and its gradient w.r.t. the meta-parameters."""

        def outer(params: dict[str, Tensor]) -> Tensor:
            per_task = vmap(
                lambda sx, sy, qx, qy: self.task_query_loss(params, sx, sy, qx, qy, batch.ways),
                randomness="same",
            )(batch.support_x, batch.support_y, batch.query_x, batch.query_y)
            return per_task.mean()

        grads, loss = torch.func.grad_and_value(outer)(self.frozen())
        return float(loss), grads

    def forward(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        """The network with ``params``: the backbone's own functional form when it has one
        (no module swapping: cheaper per inner step), else ``functional_call``."""
        functional = getattr(self.model, "functional", None)
        if functional is not None and set(params) == self._param_names:
            return functional(params, x)
        return functional_call(self.local(), params, (x,))

    def encode(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        """The backbone's encoder with ``params`` (keys ``encoder.*``): its functional form
        where it has one, else ``functional_call`` on this thread's module."""
        functional = getattr(self.model, "functional_encoder", None)
        if functional is not None and self._encoder_names and self._encoder_names <= params.keys():
            return functional(params, x)
        return functional_call(self.local().encoder, with_prefix(params, "encoder"), (x,))

    def meta_parameters(self) -> list[Tensor]:
        return list(self.params.values())

    def state_dict(self) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in self.params.items()}

    def load_state_dict(self, tensors: dict[str, Tensor]) -> None:
        missing = set(self.params) ^ set(tensors)
        if missing:
            raise ValueError(f"checkpoint keys do not match the meta-learner: {sorted(missing)}")
        with torch.no_grad():
            for k, v in tensors.items():
                if v.shape != self.params[k].shape:
                    raise ValueError(f"shape mismatch for {k}: {tuple(v.shape)}")
                self.params[k].copy_(v)
