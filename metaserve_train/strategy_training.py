"""Fit, validate and measure a step-strategy model, and ship it as a new learner version.

1. **Data.** Meta-training tasks of many shapes (ways x shots, or support sizes for
   regression) from the training split; each adapted once for the largest candidate with
   every intermediate state recorded, so the query loss of every candidate step count costs
   one adaptation. Features as served (``strategy.task_features``).
2. **Fit** the MLP to ``log query loss(k) - log query loss(default)`` per candidate.
3. **Margin** on validation tasks (Omniglot: the held-out background characters; sinusoids:
   fresh draws): the smallest predicted gain that overrides the default, chosen to minimise
   the validation query loss actually obtained.
4. **Measure** on test tasks (Omniglot's evaluation alphabets; new sinusoids), per task
   shape: the strategy against every fixed candidate, query loss and accuracy / MSE with 95%
   intervals, and the paired difference to the default.

Nothing is tuned on the test tasks: they are drawn once the strategy and its margin are fixed.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from app.meta.algorithms.base import MetaLearner
from app.meta.checkpoint import WEIGHTS, file_sha256, load_meta_learner, resolve_version_folder, write_json
from app.meta.strategy import FEATURES, StepStrategy, step_trace, task_features
from metaserve_train.evaluation import summarise

STRATEGY_FILE = "strategy.safetensors"
MARGINS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, math.inf)


@dataclass
class Outcomes:
    """Per task: features, shape, and the query loss and metric after each candidate."""

    features: torch.Tensor  # [T, F]
    shapes: list[tuple[int, int]]  # (ways, shots)
    loss: torch.Tensor  # [T, C]
    metric: torch.Tensor  # [T, C]


def sampler_for(task: str, split: str, ways: int, shots: int, queries: int):
    """Task sampler of one shape: ``train`` / ``val`` (meta-training data) or ``test``."""
    from app.meta.runtime import cache_dir
    from metaserve_train.config import omniglot_dir
    from metaserve_train.tasks.omniglot import OmniglotTasks, load_split, train_val_split
    from metaserve_train.tasks.sinusoid import SinusoidTasks

    if task == "sinusoid":
        return SinusoidTasks(shots, queries)
    if split == "test":
        data = load_split(omniglot_dir(), "evaluation", cache_dir())
    else:
        train, val = train_val_split(load_split(omniglot_dir(), "background", cache_dir()))
        data = train if split == "train" else val
    return OmniglotTasks(data, ways, shots, queries, rotations=False)


def collect(learner: MetaLearner, task: str, split: str, shapes: list[tuple[int, int]],
            n_tasks: int, candidates: list[int], queries: int, seed: int,
            progress: bool = True) -> Outcomes:
    """``n_tasks`` tasks spread over ``shapes`` (round robin), each adapted once."""
    gen = torch.Generator().manual_seed(seed)
    samplers: dict[tuple[int, int], Any] = {}
    feats, loss, metric, seen = [], [], [], []
    top = max(candidates)
    for i in tqdm(range(n_tasks), desc=f"{split} tasks", disable=not progress, leave=False):
        ways, shots = shapes[i % len(shapes)]
        key = (ways, shots)
        if key not in samplers:
            samplers[key] = sampler_for(task, split, ways, shots, queries)
        batch = samplers[key].sample(1, gen)
        sx, sy, qx, qy = batch.support_x[0], batch.support_y[0], batch.query_x[0], batch.query_y[0]
        trace = step_trace(learner, sx, sy, batch.ways, top)
        feats.append(task_features(learner, sx, sy, batch.ways, trace))
        per_loss, per_metric = [], []
        for k in candidates:
            out = learner.predict(trace[k], qx)
            per_loss.append(float(learner.loss(out, qy)))
            per_metric.append(float(learner.task.metric(out[None], qy[None])[0]))
        loss.append(per_loss)
        metric.append(per_metric)
        seen.append(key)
    return Outcomes(torch.stack(feats), seen, torch.tensor(loss, dtype=torch.float64),
                    torch.tensor(metric, dtype=torch.float64))


def cached_collect(cache: Path | None, label: str, *args: Any, **kwargs: Any) -> Outcomes:
    """``collect``, reusing ``<cache>/<label>.safetensors`` written by an identical call (the
    arguments are in its sidecar JSON), so a refit with another rule costs no adaptations."""
    from safetensors.torch import load_file, save_file

    if cache is None:
        return collect(*args, **kwargs)
    key = json.dumps([repr(a) for a in args[1:]] + [f"{k}={v!r}" for k, v in sorted(kwargs.items())
                                                     if k != "progress"])
    tensors, sidecar = cache / f"{label}.safetensors", cache / f"{label}.json"
    if tensors.is_file() and sidecar.is_file() and json.loads(sidecar.read_text())["key"] == key:
        t = load_file(str(tensors))
        return Outcomes(t["features"], [tuple(s) for s in t["shapes"].tolist()], t["loss"], t["metric"])
    out = collect(*args, **kwargs)
    cache.mkdir(parents=True, exist_ok=True)
    save_file({"features": out.features.contiguous(), "loss": out.loss.contiguous(),
               "metric": out.metric.contiguous(), "shapes": torch.tensor(out.shapes)}, str(tensors))
    sidecar.write_text(json.dumps({"key": key}))
    return out


def relative_log_loss(outcomes: Outcomes, candidates: list[int], default: int) -> torch.Tensor:
    logs = outcomes.loss.clamp_min(1e-8).log()
    return (logs - logs[:, candidates.index(default)].unsqueeze(1)).float()


def fit(train: Outcomes, candidates: list[int], default: int, seed: int,
        iterations: int = 3000, lr: float = 3e-3, weight_decay: float = 1e-4) -> StepStrategy:
    """The MLP fitted by Adam (full batch) to the relative log query losses."""
    target = relative_log_loss(train, candidates, default)
    strategy = StepStrategy.initial(candidates, default, train.features.mean(0),
                                    train.features.std(0), seed)
    trainable = {k: v.clone().requires_grad_(True) for k, v in strategy.tensors.items()
                 if k not in ("mean", "std")}
    fixed = {k: strategy.tensors[k] for k in ("mean", "std")}
    opt = torch.optim.Adam(trainable.values(), lr=lr, weight_decay=weight_decay)
    for _ in range(iterations):
        opt.zero_grad()
        loss = ((strategy.predicted(train.features, {**fixed, **trainable}) - target) ** 2).mean()
        loss.backward()
        opt.step()
    strategy.tensors = {**fixed, **{k: v.detach() for k, v in trainable.items()}}
    return strategy


def choices(strategy: StepStrategy, outcomes: Outcomes, margin: float) -> list[int]:
    return [strategy.candidates.index(strategy.decide(f, margin=margin)) for f in outcomes.features]


def choose_margin(strategy: StepStrategy, val: Outcomes, by: str = "loss",
                  higher_is_better: bool = True) -> tuple[float, list[dict[str, float]]]:
    """The margin chosen on validation tasks (ties: the larger margin).

    * ``by="loss"``: the lowest mean validation query loss (relative log loss).
    * ``by="metric"``: only margins under which **no validation shape** has a lower mean
      metric (accuracy; for MSE, a higher one) than the default are admissible — never
      overriding always is — and among them the best mean metric gain, then the lowest loss.
    """
    rel = relative_log_loss(val, strategy.candidates, strategy.default)
    d = strategy.candidates.index(strategy.default)
    sign = 1.0 if higher_is_better else -1.0
    table = []
    for margin in MARGINS:
        picked = choices(strategy, val, margin)
        gains = torch.tensor([sign * float(val.metric[i, c] - val.metric[i, d]) for i, c in enumerate(picked)])
        per_shape = {f"{w}x{k}": float(gains[[i for i, s in enumerate(val.shapes) if s == (w, k)]].mean())
                     for (w, k) in dict.fromkeys(val.shapes)}
        realised = float(torch.stack([rel[i, c] for i, c in enumerate(picked)]).mean())
        table.append({"margin": margin, "mean_relative_log_loss": realised,
                      "mean_metric_gain": float(gains.mean()),
                      "worst_shape_metric_gain": min(per_shape.values()),
                      "overridden": sum(strategy.candidates[c] != strategy.default for c in picked)})
    if by == "loss":
        best = min(table, key=lambda r: (round(r["mean_relative_log_loss"], 6), -r["margin"]))
    elif by == "metric":
        admissible = [r for r in table if r["worst_shape_metric_gain"] >= 0.0 or r["overridden"] == 0]
        best = min(admissible, key=lambda r: (-round(r["mean_metric_gain"], 6),
                                              round(r["mean_relative_log_loss"], 6), -r["margin"]))
    else:
        raise ValueError(f"margin_by must be 'loss' or 'metric', not {by!r}")
    return best["margin"], table


def measure(strategy: StepStrategy, test: Outcomes, metric_name: str) -> dict[str, Any]:
    """Per shape: every fixed candidate and the strategy, with the paired gap to the default."""
    picked = choices(strategy, test, strategy.margin)
    d = strategy.candidates.index(strategy.default)
    report: dict[str, Any] = {}
    for shape in dict.fromkeys(test.shapes):
        rows = [i for i, s in enumerate(test.shapes) if s == shape]
        name = f"{shape[0]}-way-{shape[1]}-shot" if shape[0] else f"{shape[1]}-shot"
        fixed = {str(k): {"query_loss": summarise(test.loss[rows, j].tolist()),
                          metric_name: summarise(test.metric[rows, j].tolist())}
                 for j, k in enumerate(strategy.candidates)}
        s_loss = [float(test.loss[i, picked[i]]) for i in rows]
        s_metric = [float(test.metric[i, picked[i]]) for i in rows]
        report[name] = {
            "tasks": len(rows),
            "fixed": fixed,
            "strategy": {"query_loss": summarise(s_loss), metric_name: summarise(s_metric),
                         "steps_chosen": {str(k): sum(strategy.candidates[picked[i]] == k for i in rows)
                                          for k in strategy.candidates}},
            "strategy_minus_default": {
                "query_loss": summarise([s_loss[n] - float(test.loss[i, d]) for n, i in enumerate(rows)]),
                metric_name: summarise([s_metric[n] - float(test.metric[i, d]) for n, i in enumerate(rows)]),
            },
            "best_fixed_by_query_loss": min(fixed, key=lambda k: fixed[k]["query_loss"]["mean"]),
        }
    return report


def plot(report: dict[str, Any], metric_name: str, default: int, path: Path, title: str) -> None:
    from metaserve_train.plots import plt

    shapes = list(report)
    fig, axes = plt.subplots(1, len(shapes), figsize=(3.2 * len(shapes), 3.4), squeeze=False)
    for ax, shape in zip(axes[0], shapes):
        fixed = report[shape]["fixed"]
        names = [*fixed, "auto"]
        rows = [*(fixed[k][metric_name] for k in fixed), report[shape]["strategy"][metric_name]]
        colours = ["#DD8452" if n == str(default) else "#4C72B0" for n in fixed] + ["#55A868"]
        ax.bar(names, [r["mean"] for r in rows], yerr=[r["ci95"] for r in rows], capsize=3,
               color=colours)
        lo = min(r["mean"] - r["ci95"] for r in rows)
        hi = max(r["mean"] + r["ci95"] for r in rows)
        ax.set_ylim(lo - 0.1 * (hi - lo + 1e-9), hi + 0.1 * (hi - lo + 1e-9))
        ax.set(title=shape, xlabel="steps (orange: default; green: auto)", ylabel=metric_name)
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fit_strategy_command(model: Path, version: str, candidates: list[int], train_shapes: list[tuple[int, int]],
                         test_shapes: list[tuple[int, int]], train_tasks: int, val_tasks: int,
                         test_tasks: int, queries: int, seed: int, command: str,
                         out_root: Path | None = None, progress: bool = True,
                         margin_by: str = "loss", cache: Path | None = None) -> dict[str, Any]:
    """Fit the strategy for ``model`` and write ``<models>/<name>/<version>`` beside it."""
    source = resolve_version_folder(model)
    learner, manifest = load_meta_learner(source)
    if not learner.has_steps:
        raise ValueError(f"{manifest['name']} adapts without gradient steps: no strategy to learn")
    default = learner.default_steps()
    candidates = sorted(set(candidates) | {default})
    task = "omniglot" if manifest["input"]["kind"] == "image" else "sinusoid"
    t0 = time.monotonic()
    rng = random.Random(seed)
    shuffled = train_shapes[:]
    rng.shuffle(shuffled)
    train = cached_collect(cache, "train", learner, task, "train", shuffled, train_tasks, candidates,
                           queries, seed, progress=progress)
    val = cached_collect(cache, "val", learner, task, "val", shuffled, val_tasks, candidates, queries,
                         seed + 1, progress=progress)
    metric_name = learner.task.metric_name
    strategy = fit(train, candidates, default, seed)
    strategy.margin, margins = choose_margin(strategy, val, margin_by, metric_name == "accuracy")
    test = cached_collect(cache, "test", learner, task, "test", test_shapes, test_tasks, candidates,
                          queries, seed + 2, progress=progress)
    report = measure(strategy, test, metric_name)

    out = (out_root or source.parent) / version
    if out.exists():
        raise FileExistsError(f"{out} exists; choose another version")
    out.mkdir(parents=True)
    shutil.copyfile(source / WEIGHTS, out / WEIGHTS)
    for extra in ("evaluations",):
        if (source / extra).is_dir():
            shutil.copytree(source / extra, out / extra)
    strategy.save(out / STRATEGY_FILE)
    title = f"{manifest['name']} {version}: held-out query {metric_name} by steps"
    plot(report, metric_name, default, out / "strategy.png", title)
    checksums = {}
    if task == "omniglot":
        from app.meta.runtime import cache_dir
        from metaserve_train.config import omniglot_dir
        from metaserve_train.tasks.omniglot import load_split

        for split in ("background", "evaluation"):
            checksums[f"images_{split}"] = load_split(omniglot_dir(), split, cache_dir()).sha256
    full = {
        "command": command, "seed": seed, "source_version": manifest["version"],
        "candidates": candidates, "default": default, "train_shapes": train_shapes,
        "test_shapes": test_shapes, "tasks": {"train": train_tasks, "validation": val_tasks,
                                              "test_per_run": test_tasks},
        "queries": queries, "margin_by": margin_by, "margins": margins, "seconds": round(time.monotonic() - t0, 1),
        "data_checksums": checksums or {"sinusoid": "generated (no data files)"},
        "test": report,
    }
    write_json(out / "strategy.json", full)
    new = json.loads(json.dumps(manifest))
    new["version"] = version
    new["step_strategy"] = {
        "file": STRATEGY_FILE, "sha256": file_sha256(out / STRATEGY_FILE),
        "features": list(FEATURES), "candidates": candidates, "default": default,
        "margin": strategy.margin if math.isfinite(strategy.margin) else None,
        "command": command, "seed": seed,
        "summary": {shape: {"auto": r["strategy"][metric_name]["mean"],
                            "default": r["fixed"][str(default)][metric_name]["mean"],
                            "auto_minus_default": r["strategy_minus_default"][metric_name]}
                    for shape, r in report.items()},
    }
    new["notes"] = (f"{manifest['name']}@{manifest['version']}'s weights, unchanged, with a "
                    "step-strategy model: requests without options.steps adapt with the steps it "
                    "chooses per task (strategy.json, strategy.png).")
    write_json(out / "manifest.json", new)
    return full
