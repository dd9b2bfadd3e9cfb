"""Base against own on the same held-out tasks: accuracy with its 95% interval for each, and
the paired difference (the same episodes for both, so the interval of the difference is much
narrower than either's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from metaserve_train.evaluation import expected_calibration_error, summarise


def compare(learners: dict[str, Any], sampler, tasks: int, seed: int, batch_size: int = 50) -> dict[str, Any]:
    """``{name: {mean, ci95, tasks, ece}, "difference": {...}}`` over ``tasks`` episodes drawn
    once with ``seed`` and given to every learner."""
    gen = torch.Generator().manual_seed(seed)
    scores: dict[str, list[float]] = {name: [] for name in learners}
    probs: dict[str, list] = {name: [] for name in learners}
    truth = []
    done = 0
    while done < tasks:
        batch = sampler.sample(min(batch_size, tasks - done), gen)
        for name, learner in learners.items():
            with torch.no_grad():
                states = learner.adapt_batch(batch.support_x, batch.support_y, batch.ways)
                outputs = learner.predict_batch(states, batch.query_x)
            scores[name].extend(learner.task.metric(outputs, batch.query_y).tolist())
            probs[name].append(outputs.softmax(-1).reshape(-1, outputs.shape[-1]))
        truth.append(batch.query_y.reshape(-1))
        done += len(batch)
    out: dict[str, Any] = {}
    for name in learners:
        out[name] = {**summarise(scores[name]),
                     "ece": expected_calibration_error(torch.cat(probs[name]), torch.cat(truth))}
    names = list(learners)
    if len(names) == 2:
        diff = [b - a for a, b in zip(scores[names[0]], scores[names[1]])]
        out["difference"] = {**summarise(diff), "of": f"{names[1]} - {names[0]}"}
    return out


def comparison_plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Grouped bars: base and own accuracy per protocol, with 95% intervals."""
    from metaserve_train.plots import plt

    protocols = list(dict.fromkeys(r["protocol"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(4.0, 2.2 * len(protocols)), 3.6))
    width = 0.38
    for j, (who, colour) in enumerate((("base", "#999999"), ("own", "#4C72B0"))):
        mine = [next(r for r in rows if r["protocol"] == p and r["learner"] == who) for p in protocols]
        xs = [i + (j - 0.5) * width for i in range(len(protocols))]
        ax.bar(xs, [100 * r["mean"] for r in mine], width, yerr=[100 * r["ci95"] for r in mine],
               capsize=3, color=colour, label=who)
        for x, r in zip(xs, mine):
            ax.text(x, 100 * r["mean"], f"{100 * r['mean']:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(protocols)), protocols)
    ax.set_ylabel("accuracy on held-out classes (%)")
    ax.set_ylim(0, 105)
    ax.legend(loc="lower right")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
