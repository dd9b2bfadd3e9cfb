"""Print the README's results table from the shipped manifests (the numbers `evaluate` recorded)."""

from __future__ import annotations

import json
from pathlib import Path

TARGETS = {
    ("sinusoid-maml", "5-shot-10-steps"): "MSE <= 0.35",
    ("sinusoid-metasgd", "5-shot-1-steps"): "MSE <= 0.35",
    ("sinusoid-hypernet", "5-shot"): "MSE <= 0.35",
    ("omniglot-protonet", "5-way-1-shot"): ">= 98.0%",
    ("omniglot-protonet", "20-way-1-shot"): ">= 95.0%",
    ("omniglot-protonet", "lake-20-runs"): "error <= 13.7%",
    ("omniglot-maml", "5-way-1-shot"): ">= 97.0%",
    ("omniglot-maml", "20-way-1-shot"): ">= 90%",
    ("omniglot-anil", "5-way-1-shot"): ">= 97.0%",
    ("omniglot-reptile", "5-way-5-shot"): ">= 98.0%",
    # SNAIL (Mishra et al. 2018), the attention-over-memory reference of the memory-based issue
    ("omniglot-matchingnet", "5-way-1-shot"): ">= 99.07%",
    ("omniglot-matchingnet", "20-way-1-shot"): ">= 97.64%",
}


def fmt(row: dict) -> str:
    if row["metric"] == "accuracy" and "ci95" not in row:  # text: fixed support, then 5 draws
        return (f"{100 * row['mean']:.2f}% (5 draws: {100 * row['random_mean']:.2f} ± "
                f"{100 * row['random_std']:.2f} std)")
    if row["metric"] == "accuracy":
        return f"{100 * row['mean']:.2f}% ± {100 * row['ci95']:.2f}"
    if row["metric"] == "error_rate":
        return f"{100 * row['mean']:.1f}% error"
    return f"{row['mean']:.3f} ± {row['ci95']:.3f}"


def met(row: dict, target: str) -> str:
    bound = float(target.split()[-1].rstrip("%")) / (100 if "%" in target else 1)
    ok = row["mean"] >= bound if ">=" in target else row["mean"] <= bound
    return "met" if ok else "missed"


def order(protocol: str) -> tuple:
    """5-way before 20-way, 1 shot before 5; other protocols after, by name."""
    parts = protocol.split("-")
    if len(parts) >= 4 and parts[1] == "way" and parts[0].isdigit() and parts[2].isdigit():
        return (0, int(parts[0]), int(parts[2]), protocol)
    return (1, 0, 0, protocol)


def size(row: dict) -> str:
    if "items" in row:
        return f"{row['items']} items"
    return f"{row.get('tasks', '?')} tasks"


def main() -> None:
    from app.meta.checkpoint import version_key

    print("| meta-learner | version | algorithm | family | protocol | test set | result (95% CI) | target |")
    print("|---|---|---|---|---|---|---|---|")
    folders = sorted(Path("models").glob("*/*/manifest.json"),
                     key=lambda p: (p.parent.parent.name, version_key(p.parent.name)))
    for path in folders:
        manifest = json.loads(path.read_text())
        for protocol, row in sorted(manifest["evaluation"].items(), key=lambda kv: order(kv[0])):
            target = TARGETS.get((manifest["name"], protocol))
            verdict = f"{target} ({met(row, target)})" if target else "-"
            print(f"| {manifest['name']} | {manifest['version']} | {manifest['algorithm']} "
                  f"| {manifest['family']} | {protocol} | {size(row)} | {fmt(row)} | {verdict} |")


if __name__ == "__main__":
    main()
