"""The step-strategy model: traces, features, decisions and the fitting pipeline."""

from __future__ import annotations

import math

import torch

from app.meta.algorithms import AdaptOptions
from app.meta.checkpoint import load_meta_learner
from app.meta.strategy import FEATURES, StepStrategy, step_trace, task_features
from metaserve_train.strategy_training import Outcomes, choose_margin, fit, measure
from tests.conftest import REPO


def sine_task(seed: int, shots: int = 5):
    gen = torch.Generator().manual_seed(seed)
    x = torch.empty(shots, 1).uniform_(-5, 5, generator=gen)
    return x, 2.0 * torch.sin(x - 0.5)


def test_a_trace_holds_the_state_after_every_step_exactly():
    learner, _ = load_meta_learner(REPO / "models" / "sinusoid-maml")
    x, y = sine_task(0)
    trace = step_trace(learner, x, y, 0, 6)
    assert len(trace) == 7
    for k in (0, 1, 4, 6):
        direct = learner.adapt_params(learner.frozen(), x, y, 0, k)
        for name, value in direct.items():
            torch.testing.assert_close(trace[k][name], value.detach(), rtol=0, atol=0)


def test_an_adaptation_carried_on_from_its_first_step_equals_one_taken_at_once():
    """What auto does: the first step (taken while choosing) and k - 1 more equal k steps,
    bit for bit, for MAML and Meta-SGD (learned per-parameter rates)."""
    for name in ("sinusoid-maml", "sinusoid-metasgd"):
        learner, _ = load_meta_learner(REPO / "models" / name)
        assert learner.continues
        x, y = sine_task(2)
        strategy = StepStrategy.initial([1, 3, 10], 10, torch.zeros(len(FEATURES)), torch.ones(len(FEATURES)))
        chosen, first = strategy.choose_with_first_step(learner, x, y, 0, max_steps=50)
        assert chosen in (1, 3, 10)
        for k in (1, 3, 10):
            carried = learner.adapt_from(first, x, y, 0, k - 1)
            direct = learner.adapt(x, y, 0, AdaptOptions(steps=k))
            for key, value in direct.items():
                torch.testing.assert_close(carried[key], value, rtol=0, atol=0)


def test_a_batch_carried_on_from_each_tasks_first_step_equals_each_task_alone():
    """Micro-batched auto requests: tasks stacked, each from its own first step, give what
    each task carried on alone gives (to float rounding: one vmapped forward per step)."""
    learner, _ = load_meta_learner(REPO / "models" / "sinusoid-metasgd")
    strategy = StepStrategy.initial([1, 3, 10], 10, torch.zeros(len(FEATURES)), torch.ones(len(FEATURES)))
    tasks = [sine_task(seed) for seed in (3, 4, 5)]
    firsts = [strategy.choose_with_first_step(learner, x, y, 0, max_steps=50)[1] for x, y in tasks]
    starts = {k: torch.stack([f[k] for f in firsts]) for k in firsts[0]}
    batched = learner.adapt_batch_from(starts, torch.stack([x for x, _ in tasks]),
                                       torch.stack([y for _, y in tasks]), 0, 4)
    for j, ((x, y), first) in enumerate(zip(tasks, firsts, strict=True)):
        alone = learner.adapt_from(first, x, y, 0, 4)
        for key, value in alone.items():
            torch.testing.assert_close(batched[key][j], value, rtol=1e-5, atol=1e-6)


def test_features_are_finite_and_named():
    learner, _ = load_meta_learner(REPO / "models" / "sinusoid-maml")
    x, y = sine_task(1)
    f = task_features(learner, x, y, 0)
    assert f.shape == (len(FEATURES),) and bool(torch.isfinite(f).all())
    assert f[FEATURES.index("loss_after_one")] < f[FEATURES.index("loss_before")]
    assert math.isclose(float(f[FEATURES.index("log_support")]), math.log(5), rel_tol=1e-6)


def test_decisions_respect_margin_and_affordability():
    s = StepStrategy.initial([1, 5, 10], 10, torch.zeros(len(FEATURES)), torch.ones(len(FEATURES)))
    s.tensors["w3"].zero_()
    s.tensors["b3"] = torch.tensor([-0.3, -0.1, 0.0])
    f = torch.zeros(len(FEATURES))
    assert s.decide(f, margin=0.0) == 1
    assert s.decide(f, margin=0.5) == 10  # no candidate beats the default by 0.5
    assert s.decide(f, affordable=[5, 10], margin=0.05) == 5
    assert s.decide(f, margin=math.inf) == 10


def synthetic(n: int, seed: int) -> Outcomes:
    """Tasks whose best step count is readable from feature 0: 1 step when it is negative,
    10 steps otherwise (the default, 5, is in between)."""
    gen = torch.Generator().manual_seed(seed)
    f = torch.randn(n, len(FEATURES), generator=gen)
    good = f[:, 0] < 0
    loss = torch.where(good[:, None], torch.tensor([0.5, 1.0, 2.0]), torch.tensor([2.0, 1.0, 0.5]))
    return Outcomes(f, [(5, 1)] * n, loss.double(), (1 / loss).double())


def test_fitting_learns_a_rule_that_beats_the_default_on_new_tasks():
    candidates = [1, 5, 10]
    strategy = fit(synthetic(400, 0), candidates, 5, seed=0, iterations=600)
    strategy.margin, table = choose_margin(strategy, synthetic(200, 1))
    assert strategy.margin < math.inf and len(table) > 1
    report = measure(strategy, synthetic(300, 2), "accuracy")["5-way-1-shot"]
    assert report["strategy"]["query_loss"]["mean"] < 0.6  # near the best possible, 0.5
    assert report["strategy_minus_default"]["query_loss"]["mean"] < -0.3


def test_margin_by_metric_refuses_a_rule_that_costs_one_shape_accuracy():
    """Lower loss everywhere, but lower accuracy on one shape: by loss the rule overrides,
    by metric no margin that overrides is admissible, so the default stands."""
    n = 200
    f = torch.randn(n, len(FEATURES), generator=torch.Generator().manual_seed(3))
    shapes = [(5, 1) if i % 2 else (20, 5) for i in range(n)]
    loss = torch.tensor([[0.5, 1.0]] * n, dtype=torch.float64)  # 1 step: lower loss always
    metric = torch.tensor([[0.9, 0.95] if s == (20, 5) else [0.99, 0.98] for s in shapes],
                          dtype=torch.float64)
    val = Outcomes(f, shapes, loss, metric)
    strategy = fit(val, [1, 5], 5, seed=0, iterations=300)
    by_loss, _ = choose_margin(strategy, val, "loss")
    by_metric, table = choose_margin(strategy, val, "metric")
    assert by_loss < math.inf and by_metric == math.inf
    assert min(r["worst_shape_metric_gain"] for r in table) < 0


def test_outcomes_are_cached_and_reused(tmp_path, monkeypatch):
    from metaserve_train import strategy_training

    learner, _ = load_meta_learner(REPO / "models" / "sinusoid-maml")
    args = (learner, "sinusoid", "train", [(0, 5)], 4, [1, 10], 20, 0)
    first = strategy_training.cached_collect(tmp_path, "train", *args, progress=False)
    monkeypatch.setattr(strategy_training, "collect", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    again = strategy_training.cached_collect(tmp_path, "train", *args, progress=False)
    assert torch.equal(first.loss, again.loss) and again.shapes == first.shapes
