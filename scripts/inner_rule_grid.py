"""Choose an inner-loss rule that is stable across task shapes, on held-out *background* data.

For each gradient-based Omniglot meta-learner and each candidate ``inner_loss_scale`` rule,
measure query accuracy on the validation characters (every 10th background character, never
trained on; the evaluation alphabets are not touched) over 5/20-way x 1/5/10-shot, then write
JSON and a plot. Usage:

    python scripts/inner_rule_grid.py models/omniglot-maml/1.0.0 --out reports/inner-rule \
        --rule support:reference_support=20 --rule ways:reference_ways=20 --rule mean --tasks 40
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from app.atomic_io import atomic_write_bytes
from app.meta.checkpoint import load_meta_learner
from app.meta.runtime import cache_dir
from metaserve_train.config import omniglot_dir
from metaserve_train.evaluation import evaluate_tasks
from metaserve_train.tasks.omniglot import OmniglotTasks, load_split, train_val_split

SHAPES = [(5, 1), (5, 5), (5, 10), (20, 1), (20, 5), (20, 10)]


def parse_rule(text: str) -> tuple[str, dict[str, float]]:
    """``ways:reference_ways=20,steps=5`` -> ("ways", {"reference_ways": 20, "steps": 5})."""
    name, _, rest = text.partition(":")
    extra = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        extra[key] = float(value)
    return name, extra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rule", action="append", required=True)
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--tag", default="", help="suffix of the output file name")
    args = parser.parse_args()

    learner, manifest = load_meta_learner(args.model)
    background = load_split(omniglot_dir(), "background", cache_dir())
    _, validation = train_val_split(background)
    base = learner.hp
    results = []
    out = args.out / f"{manifest['name']}{args.tag}.json"
    for rule_text in args.rule:
        rule, extra = parse_rule(rule_text)
        steps = int(extra.pop("steps")) if "steps" in extra else None
        extra = {k: int(v) for k, v in extra.items()}
        learner.hp = replace(base, inner_loss_scale=rule, **extra)
        for ways, shots in SHAPES:
            sampler = OmniglotTasks(validation, ways, shots, args.queries, rotations=False)
            t0 = time.monotonic()
            res = evaluate_tasks(learner, sampler, args.tasks, seed=args.seed, steps=steps,
                                 progress=False)
            results.append({"rule": rule_text, "ways": ways, "shots": shots, **res,
                            "seconds": round(time.monotonic() - t0, 1)})
            print(json.dumps(results[-1]), flush=True)
            report = {"model": manifest["name"], "version": manifest.get("version"),
                      "split": "background validation characters (every 10th)",
                      "data_checksum": background.sha256, "tasks_per_cell": args.tasks,
                      "queries_per_class": args.queries, "seed": args.seed,
                      "steps": learner.default_steps(), "torch": torch.__version__,
                      "results": results}
            args.out.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(out, (json.dumps(report, indent=2) + "\n").encode())
    plot(report, out.with_suffix(".png"))


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, ways in zip(axes, (5, 20)):
        for rule in dict.fromkeys(r["rule"] for r in report["results"]):
            rows = [r for r in report["results"] if r["rule"] == rule and r["ways"] == ways]
            ax.errorbar([r["shots"] for r in rows], [100 * r["mean"] for r in rows],
                        yerr=[100 * r["ci95"] for r in rows], marker="o", capsize=3, label=rule)
        ax.set_title(f"{report['model']}: {ways}-way (validation)")
        ax.set_xlabel("shots per class")
        ax.set_xticks([1, 5, 10])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("query accuracy (%)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
