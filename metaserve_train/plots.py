"""PNG plots written beside training and evaluation reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def learning_curve(log: list[dict[str, Any]], path: Path, title: str, metric: str) -> None:
    """Training loss and validation metric against iterations."""
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    train = [r for r in log if "loss" in r]
    val = [r for r in log if "val" in r]
    ax[0].plot([r["iteration"] for r in train], [r["loss"] for r in train], lw=0.8)
    ax[0].set(xlabel="iteration", ylabel="meta-training query loss", title=title)
    ax[0].set_yscale("log")
    if val:
        ax[1].errorbar(
            [r["iteration"] for r in val], [r["val"]["mean"] for r in val],
            yerr=[r["val"]["ci95"] for r in val], marker="o", ms=3, capsize=2,
        )
    ax[1].set(xlabel="iteration", ylabel=f"validation {metric}", title="held-out validation")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def results_table(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Bar charts of evaluation results with their 95% intervals, one panel per metric (an
    error rate never sits on an accuracy axis)."""
    metrics = list(dict.fromkeys(r.get("metric", "") for r in rows)) or [""]
    widths = [max(3.0, 1.6 * sum(r.get("metric", "") == m for r in rows)) for m in metrics]
    fig, axes = plt.subplots(1, len(metrics), figsize=(sum(widths), 3.6), squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    for ax, metric in zip(axes[0], metrics):
        mine = [r for r in rows if r.get("metric", "") == metric]
        ax.bar([r["protocol"] for r in mine], [r["mean"] for r in mine],
               yerr=[r.get("ci95", 0) for r in mine], capsize=4, color="#4C72B0")
        for i, r in enumerate(mine):
            ax.text(i, r["mean"], f"{r['mean']:.4g}", ha="center", va="bottom", fontsize=8)
        ax.set_ylabel(metric.replace("_", " "))
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
