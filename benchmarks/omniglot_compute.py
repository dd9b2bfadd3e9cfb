"""omniglot-maml's single-task adaptation against raw autograd on the same network.

The same Conv4 weights, the same 5-way 1-shot support set and the same number of SGD steps:
``learner.adapt`` (the service's path: plain ``torch.autograd.grad`` on the backbone's
functional form) against the shortest loop one can write by hand — ``autograd.grad`` of the
cross-entropy of ``F.conv2d``/``group_norm``/``max_pool``/``relu`` and an update per tensor.
Checks that both give the same adapted weights, then times them interleaved (medians).

    python -m benchmarks.omniglot_compute [--steps 10] [--repeats 30] [--threads 1] [--device cuda]
        [--out benchmarks/results/omniglot_compute.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from app.meta.algorithms import AdaptOptions
from app.meta.checkpoint import load_meta_learner

REPO = Path(__file__).resolve().parents[1]


def raw_forward(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    for i in range(4):
        x = F.conv2d(x, p[f"encoder.{i}.0.weight"], p[f"encoder.{i}.0.bias"], padding=1)
        x = F.group_norm(x, 1, p[f"encoder.{i}.1.weight"], p[f"encoder.{i}.1.bias"])
        x = F.max_pool2d(F.relu(x), 2)
    return F.linear(x.flatten(1), p["head.weight"], p["head.bias"])


def raw_adapt(start: dict[str, torch.Tensor], x, y, lr: float, steps: int) -> dict[str, torch.Tensor]:
    p = {k: v.clone().requires_grad_(True) for k, v in start.items()}
    for _ in range(steps):
        grads = torch.autograd.grad(F.cross_entropy(raw_forward(p, x), y), list(p.values()))
        with torch.no_grad():
            p = {k: (v - lr * g).requires_grad_(True) for (k, v), g in zip(p.items(), grads, strict=True)}
    return {k: v.detach() for k, v in p.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ways", type=int, default=5)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (both paths on that device)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "omniglot_compute.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    learner, manifest = load_meta_learner(REPO / "models" / "omniglot-maml")
    learner.to(args.device)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.ways, 1, 28, 28, generator=gen).to(args.device)
    y = torch.arange(args.ways).to(args.device)

    def sync() -> None:
        if x.is_cuda:
            torch.cuda.synchronize()
    start = learner.initial_state(args.ways)
    lr = float(learner.hp.inner_lr) * learner.inner_loss_weight(args.ways, args.ways)
    options = AdaptOptions(steps=args.steps)
    ours = learner.adapt(x, y, args.ways, options)
    raw = raw_adapt(start, x, y, lr, args.steps)
    gap = max(float((ours[k] - raw[k]).abs().max()) for k in raw)
    times = {"metaserve": [], "raw_autograd": []}
    for _ in range(args.repeats + 3):
        sync()
        t0 = time.perf_counter()
        learner.adapt(x, y, args.ways, options)
        sync()
        t1 = time.perf_counter()
        raw_adapt(start, x, y, lr, args.steps)
        sync()
        t2 = time.perf_counter()
        times["metaserve"].append(t1 - t0)
        times["raw_autograd"].append(t2 - t1)
    med = {k: 1000 * statistics.median(v[3:]) for k, v in times.items()}
    result = {"model": f"{manifest['name']}@{manifest['version']}", "ways": args.ways, "shots": 1,
              "steps": args.steps, "threads": args.threads, "device": str(x.device),
              "max_abs_weight_difference": gap,
              "ms_p50": med, "ratio_metaserve_over_raw": med["metaserve"] / med["raw_autograd"]}
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
