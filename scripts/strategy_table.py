"""Print the README's step-strategy table (options.steps = "auto" against every fixed step
count) from the reports ``metaserve fit-strategy`` wrote: ``models/*/*/strategy.json`` for the
versions shipped with a strategy, ``reports/strategy/*.json`` for those not shipped."""

from __future__ import annotations

import json
from pathlib import Path


def value(summary: dict, metric: str) -> str:
    if metric == "accuracy":
        return f"{100 * summary['mean']:.2f}% ± {100 * summary['ci95']:.2f}"
    return f"{summary['mean']:.3f} ± {summary['ci95']:.3f}"


def rows(name: str, report: dict, shipped: str) -> list[str]:
    out = []
    default = str(report["default"])
    for shape, r in report["test"].items():
        metric = "accuracy" if "accuracy" in r["strategy"] else "mse"
        sign = 1 if metric == "accuracy" else -1
        best = max(r["fixed"], key=lambda k: r["fixed"][k][metric]["mean"] * sign)
        gap = r["strategy_minus_default"][metric]
        scale = 100 if metric == "accuracy" else 1
        chosen = ", ".join(f"{k}: {n}" for k, n in r["strategy"]["steps_chosen"].items() if n)
        out.append(f"| {name} | {shipped} | {shape} | {r['tasks']} | {value(r['fixed'][default][metric], metric)} "
                   f"({default} steps) | {value(r['strategy'][metric], metric)} | "
                   f"{scale * gap['mean']:+.3g} ± {scale * gap['ci95']:.2g} | "
                   f"{value(r['fixed'][best][metric], metric)} ({best} steps) | {chosen} |")
    return out


def main() -> None:
    print("| meta-learner | shipped as | test shape | tasks | fixed default | auto "
          "| auto − default (paired, 95% CI) | best fixed | steps auto chose (tasks) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for path in sorted(Path("models").glob("*/*/strategy.json")):
        print("\n".join(rows(path.parts[1], json.loads(path.read_text()), path.parts[2])))
    for path in sorted(Path("reports/strategy").glob("*.json")):
        print("\n".join(rows(path.stem, json.loads(path.read_text()), "not shipped")))


if __name__ == "__main__":
    main()
