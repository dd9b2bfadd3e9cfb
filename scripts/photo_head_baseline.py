"""An optimization-based head on frozen photo embeddings against prototypes, on the same tasks.

The head is ANIL-style (Raghu et al. 2020): a linear classifier over the frozen backbone's
L2-normalised embeddings, initialised as the prototype classifier (w_k = 2 c_k, b_k = -|c_k|^2,
so that step 0 *is* ProtoNet) and trained for a few gradient steps on the support set's
cross-entropy. For each DTD-10 fold the steps and learning rate are chosen on tasks of the other
five classes; the chosen head and the prototypes are then scored on the same 600 tasks of the
fold's classes (paired). Writes ``reports/photos/head-baseline.json`` and its plot.

    python scripts/photo_head_baseline.py [--photos DIR] [--tasks 600]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.meta.runtime import cache_dir  # noqa: E402
from metaserve_train.config import images_dir  # noqa: E402
from metaserve_train.tasks.episodes import EmbeddingEpisodes  # noqa: E402
from metaserve_train.tasks.photos import class_pools, embed_folder, scan_photo_folder  # noqa: E402

FOLDS = {"A": ["banded", "blotchy", "braided", "bubbly", "bumpy"],
         "B": ["chequered", "cobwebbed", "cracked", "crosshatched", "crystalline"]}
GRID = [(steps, lr) for steps in (10, 50) for lr in (0.01, 0.1, 1.0)]


def head_accuracy(batch, steps: int, lr: float) -> torch.Tensor:
    """Per-task query accuracy of the head after ``steps`` full-batch gradient steps."""
    accs = []
    for sx, sy, qx, qy in zip(batch.support_x, batch.support_y, batch.query_x, batch.query_y, strict=True):
        protos = F.one_hot(sy, batch.ways).float().T @ sx / F.one_hot(sy, batch.ways).sum(0)[:, None]
        w = (2 * protos).clone().requires_grad_(True)
        b = (-(protos * protos).sum(-1)).clone().requires_grad_(True)
        opt = torch.optim.SGD([w, b], lr=lr)
        for _ in range(steps):
            loss = F.cross_entropy(sx @ w.T + b, sy)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            accs.append(((qx @ w.T + b).argmax(-1) == qy).float().mean())
    return torch.stack(accs)


def summary(values: torch.Tensor) -> dict[str, float]:
    return {"mean": float(values.mean()), "ci95": float(1.96 * values.std() / math.sqrt(values.numel())),
            "tasks": values.numel()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=Path, default=None, help="default: METASERVE_IMAGES_DIR/dtd10")
    parser.add_argument("--tasks", type=int, default=600)
    parser.add_argument("--val-tasks", type=int, default=200)
    args = parser.parse_args()
    folder = embed_folder(scan_photo_folder(args.photos or images_dir() / "dtd10"), "efficientnet-lite0",
                          cache_dir(), progress=True)
    report = {"date": time.strftime("%Y-%m-%d"), "command": "python scripts/photo_head_baseline.py "
              + " ".join(sys.argv[1:]), "grid": GRID, "folds": {}}
    for name, test in FOLDS.items():
        other = [c for c in folder.classes if c not in test]
        fold = {"validation": {}, "test": {}}
        for shots in (1, 5):
            val = EmbeddingEpisodes(list(class_pools(folder, other).values()), 5, shots, 15).sample(
                args.val_tasks, torch.Generator().manual_seed(100 + shots))
            scores = {f"{s}:{lr}": float(head_accuracy(val, s, lr).mean()) for s, lr in GRID}
            steps, lr = max(GRID, key=lambda g: scores[f"{g[0]}:{g[1]}"])
            tasks = EmbeddingEpisodes(list(class_pools(folder, test).values()), 5, shots, 15).sample(
                args.tasks, torch.Generator().manual_seed(shots))
            head, protos = head_accuracy(tasks, steps, lr), head_accuracy(tasks, 0, 0.0)
            fold["validation"][f"{shots}-shot"] = {"scores": scores, "chosen": {"steps": steps, "lr": lr}}
            fold["test"][f"{shots}-shot"] = {"prototypes": summary(protos), "head": summary(head),
                                             "head_minus_prototypes": summary(head - protos)}
            print(name, shots, {k: round(100 * v["mean"], 1) for k, v in fold["test"][f"{shots}-shot"].items()},
                  "chosen", steps, lr, flush=True)
        report["folds"][name] = fold
    out = Path("reports/photos/head-baseline.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    from metaserve_train.plots import results_table

    rows = [{"protocol": f"fold {name} {shots} {mode}", "metric": "accuracy", **result[mode]}
            for name, fold in report["folds"].items() for shots, result in fold["test"].items()
            for mode in ("prototypes", "head")]
    results_table(rows, out.with_suffix(".png"),
                  f"DTD-10 5-way, frozen Lite0: prototypes vs head ({report['date']})")


if __name__ == "__main__":
    main()
