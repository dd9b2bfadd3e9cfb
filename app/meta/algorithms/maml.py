"""MAML: Model-Agnostic Meta-Learning, second- and first-order.

Finn, Abbeel, Levine (2017), "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
Networks", ICML. The outer loop learns an initialisation θ; a task is adapted by ``steps``
gradient steps on its support set, θ' = θ - α ∇L_support(θ), and the meta-objective is the
query loss at θ'. ``first_order=True`` drops the second derivatives (FOMAML).

Adapted state: every weight of the network (all of them change).
"""

from __future__ import annotations

from torch import Tensor

from app.meta.algorithms.base import MetaLearner
from app.meta.algorithms.hyperparameters import GradientHyperparameters
from app.meta.algorithms.inner_loop import TaskLossFn, descend_tasks, descend_tasks_from, gradient_descent
from app.meta.backbones import expand_head
from app.meta.types import AdaptedState


class MAML(MetaLearner):
    """Learned initialisation adapted by SGD (``GradientHyperparameters``)."""

    name = "maml"
    hyperparameters = GradientHyperparameters
    family = "optimization"
    has_steps = True
    continues = True

    def weights(self, params: dict[str, Tensor]) -> dict[str, Tensor]:
        """The network's weights among the meta-parameters."""
        return params

    def inner_lrs(
        self, params: dict[str, Tensor], fast: dict[str, Tensor]
    ) -> dict[str, Tensor] | float:
        return float(self.hp.inner_lr)

    def initial_state(self, ways: int) -> AdaptedState:
        start = expand_head(self.weights(self.frozen()), ways)
        return {k: v.contiguous() for k, v in start.items()}

    def inner_problem(self, params: dict[str, Tensor], support: int, ways: int
                      ) -> tuple[dict[str, Tensor], TaskLossFn, dict[str, Tensor] | float]:
        """Where the inner loop starts, one task's support loss as a function of (weights,
        x, y), and the inner learning rates."""
        fast = expand_head(self.weights(params), ways)
        weight = self.inner_loss_weight(support, ways)

        def task_loss(p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
            return self.loss(self.forward(p, x), y) * weight

        return fast, task_loss, self.inner_lrs(params, fast)

    def adapt_params(
        self, params: dict[str, Tensor], x: Tensor, y: Tensor, ways: int, steps: int
    ) -> AdaptedState:
        fast, task_loss, lrs = self.inner_problem(params, x.shape[0], ways)
        first_order = self.hp.first_order
        return gradient_descent(lambda p: task_loss(p, x, y), fast, lrs, steps, first_order)

    def adapt_from(self, state: AdaptedState, x: Tensor, y: Tensor, ways: int, steps: int) -> AdaptedState:
        """The inner loop carried on from ``state`` with the meta-learned rates: each step
        depends only on the weights it starts from, so k steps and then ``steps`` more are the
        same computation as k + ``steps`` at once."""
        _, task_loss, lrs = self.inner_problem(self.frozen(), x.shape[0], ways)
        fast = {k: v.detach() for k, v in state.items()}
        adapted = gradient_descent(lambda p: task_loss(p, x, y), fast, lrs, steps, self.hp.first_order)
        return {k: v.detach().contiguous() for k, v in adapted.items()}

    def adapt_batch_from(self, states: AdaptedState, xs: Tensor, ys: Tensor, ways: int,
                         steps: int) -> AdaptedState:
        _, task_loss, lrs = self.inner_problem(self.frozen(), xs.shape[1], ways)
        adapted = descend_tasks_from(task_loss, states, lrs, steps, xs, ys)
        return {k: v.detach().contiguous() for k, v in adapted.items()}

    def adapt_params_batch(
        self, params: dict[str, Tensor], xs: Tensor, ys: Tensor, ways: int, steps: int
    ) -> AdaptedState:
        fast, task_loss, lrs = self.inner_problem(params, xs.shape[1], ways)
        return descend_tasks(task_loss, fast, lrs, steps, xs, ys)

    def predict_params(
        self, params: dict[str, Tensor], state: AdaptedState, x: Tensor
    ) -> Tensor:
        return self.forward(state, x)
