"""Measure a meta-learner: mean accuracy / MSE with a 95% confidence interval over tasks,
and the error rate on the 20 one-shot runs of Lake et al. (2015)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from tqdm import tqdm

from app.meta.algorithms import AdaptOptions, MetaLearner
from app.meta.types import TaskBatch
from metaserve_train.tasks.omniglot import LakeRun


def task_metrics(
    learner: MetaLearner, batch: TaskBatch, steps: int | None = None, batched: bool = True
) -> torch.Tensor:
    """Per-task query accuracy (classification) or MSE (regression).

    ``batched`` adapts all tasks in one ``vmap``; otherwise one task at a time (on CPU a loop
    of ordinary convolutions beats vmapped, i.e. grouped, convolutions for gradient steps).
    """
    options = AdaptOptions(steps=steps)
    if batched:
        states = learner.adapt_batch(batch.support_x, batch.support_y, batch.ways, options)
        outputs = learner.predict_batch(states, batch.query_x)
    else:
        outputs = torch.stack([
            learner.predict(
                learner.adapt(batch.support_x[i], batch.support_y[i], batch.ways, options),
                batch.query_x[i],
            )
            for i in range(len(batch))
        ])
    return learner.task.metric(outputs, batch.query_y)


def summarise(values: Iterable[float]) -> dict[str, float]:
    """Mean and the half-width of its 95% normal confidence interval."""
    t = torch.tensor(list(values), dtype=torch.float64)
    n = t.numel()
    std = float(t.std(unbiased=True)) if n > 1 else 0.0
    return {"mean": float(t.mean()), "ci95": 1.96 * std / math.sqrt(n), "tasks": n}


def expected_calibration_error(probs: torch.Tensor, truth: torch.Tensor, bins: int = 15) -> float:
    """ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins
    weighted by how many predictions fall in each."""
    conf, pred = probs.max(-1)
    correct = (pred == truth).float()
    total = 0.0
    for lo in range(bins):
        mask = (conf > lo / bins) & (conf <= (lo + 1) / bins)
        if mask.any():
            total += float(mask.float().mean() * (correct[mask].mean() - conf[mask].mean()).abs())
    return total


def evaluate_tasks(
    learner: MetaLearner, sampler, n_tasks: int, seed: int, batch_size: int = 20,
    steps: int | None = None, progress: bool = True, batched: bool | None = None,
) -> dict[str, float]:
    """Mean metric and 95% CI over ``n_tasks`` test tasks drawn with ``seed``.

    ``batched`` defaults to vmap except for gradient-based learners on CPU.
    """
    if batched is None:
        batched = learner.device.type == "cuda" or not learner.has_steps
    gen = torch.Generator().manual_seed(seed)
    values: list[float] = []
    with tqdm(total=n_tasks, desc="evaluate", disable=not progress, leave=False) as bar:
        while len(values) < n_tasks:
            batch = sampler.sample(min(batch_size, n_tasks - len(values)), gen)
            values.extend(task_metrics(learner, batch, steps, batched).cpu().tolist())
            bar.update(len(batch))
    return summarise(values)


def evaluate_with_calibration(
    learner: MetaLearner, sampler, n_tasks: int, seed: int, batch_size: int = 20, progress: bool = True,
) -> dict[str, float]:
    """:func:`evaluate_tasks` for classifiers, plus the expected calibration error of the served
    probabilities over every query of the tasks (the same tasks as ``evaluate_tasks``)."""
    gen = torch.Generator().manual_seed(seed)
    values: list[float] = []
    probs, truth = [], []
    with tqdm(total=n_tasks, desc="evaluate", disable=not progress, leave=False) as bar:
        while len(values) < n_tasks:
            batch = sampler.sample(min(batch_size, n_tasks - len(values)), gen)
            states = learner.adapt_batch(batch.support_x, batch.support_y, batch.ways)
            outputs = learner.predict_batch(states, batch.query_x)
            values.extend(learner.task.metric(outputs, batch.query_y).cpu().tolist())
            probs.append(outputs.softmax(-1).reshape(-1, outputs.shape[-1]))
            truth.append(batch.query_y.reshape(-1))
            bar.update(len(batch))
    return {**summarise(values), "ece": expected_calibration_error(torch.cat(probs), torch.cat(truth))}


def evaluate_lake_runs(learner: MetaLearner, runs: list[LakeRun]) -> dict[str, float]:
    """Error rate over the 400 test items of the 20 within-alphabet 20-way 1-shot runs."""
    errors = 0
    per_run = {}
    for run in runs:
        state = learner.adapt(run.train, torch.arange(len(run.train)), len(run.train))
        wrong = int((learner.predict(state, run.test).argmax(-1) != run.answers).sum())
        per_run[run.name] = wrong / len(run.test)
        errors += wrong
    items = sum(len(r.test) for r in runs)
    return {"error_rate": errors / items, "errors": errors, "items": items, "per_run": per_run}


def evaluate_text_support(learner: MetaLearner, support, test,
                          embed_labels: Callable[[list[str]], torch.Tensor | None] | None = None
                          ) -> dict[str, float]:
    """Adapt on a whole support split (every intent at once) and classify a test split; a
    learner that reads label names gets them from ``embed_labels`` (the intents, sorted), as
    the service gives them."""
    labels = sorted(set(support.intents))
    index = {label: i for i, label in enumerate(labels)}
    y = torch.tensor([index[i] for i in support.intents])
    names = embed_labels(labels) if embed_labels is not None and learner.reads_label_names else None
    state = learner.adapt(support.embeddings, y, len(labels), AdaptOptions(label_inputs=names))
    known = [i for i, intent in enumerate(test.intents) if intent in index]
    with torch.no_grad():
        logits = learner.predict(state, test.embeddings[known])
    truth = torch.tensor([index[test.intents[i]] for i in known])
    accuracy = float((logits.argmax(-1) == truth).float().mean())
    return {"accuracy": accuracy, "ways": len(labels), "support": len(support.intents),
            "test": len(known), "test_unknown_intents": len(test.intents) - len(known)}
