"""In-process batched vs looped adaptation, with the time spent in Python's garbage collector.

A diagnostic for a batching collapse once seen on a 16-core GPU machine (a vmapped
batch far slower per task than a loop, erratic from run to run): it times ``adapt_batch`` on a
stack of ``--batch`` tasks against ``adapt`` called once per task, repeated, and records every
garbage-collector pause (``gc.callbacks``) so that a slow round can be told apart from a
collection. ``--gc frozen`` moves the loaded objects out of the collector's reach first, as the
service does after start-up (``app/engine/build.py``).

    python -m benchmarks.vmap_floor [--only sinusoid-maml omniglot-maml] [--batch 32]
        [--rounds 5] [--device cpu|cuda] [--threads N] [--gc default|frozen] [--out FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from pathlib import Path

import torch

from app.engine.registry import load_registry
from benchmarks.server import REPO


class GcPauses:
    """Wall time of every collection, by generation, while installed."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._start = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._start))

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def tasks(name: str, batch: int, device: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    g = torch.Generator().manual_seed(0)
    if name.startswith("sinusoid"):
        xs = torch.rand(batch, 5, 1, generator=g) * 10 - 5
        ys = torch.sin(xs) * (torch.rand(batch, 1, 1, generator=g) * 4.9 + 0.1)
        ways = 0
    else:
        xs = torch.rand(batch, 5, 1, 28, 28, generator=g)
        ys = torch.arange(5).expand(batch, 5).contiguous()
        ways = 5
    return xs.to(device), ys.to(device), ways


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def adapt_round(learner, xs: torch.Tensor, ys: torch.Tensor, ways: int, mode: str,  # noqa: ANN001
                device: str) -> None:
    """One batch of tasks, adapted by one vmapped call (``vmap``) or a loop of single calls
    (``loop``), finished on the device."""
    if mode == "loop":
        for i in range(xs.shape[0]):
            learner.adapt(xs[i], ys[i], ways)
    else:
        learner.adapt_batch(xs, ys, ways)
    sync(device)


def measure(learner, xs, ys, ways: int, mode: str, rounds: int, device: str) -> dict:
    """``rounds`` timed rounds of one batch (vmapped call, or a loop of single calls)."""
    batch = xs.shape[0]
    rows = []
    for _ in range(rounds + 1):  # the first round warms kernels and caches, not reported
        with GcPauses() as pauses:
            t0 = time.perf_counter()
            adapt_round(learner, xs, ys, ways, mode, device)
            wall = time.perf_counter() - t0
        rows.append({"ms": round(wall * 1000, 2),
                     "gc_ms": round(sum(p for _, p in pauses.pauses) * 1000, 2),
                     "gc_full": sum(1 for gen, _ in pauses.pauses if gen == 2)})
    rows = rows[1:]
    per_task = [r["ms"] / batch for r in rows]
    return {"tasks_per_s_median": round(1000 / statistics.median(per_task), 1),
            "ms_per_task_min_median_max": [round(min(per_task), 3), round(statistics.median(per_task), 3),
                                           round(max(per_task), 3)],
            "rounds": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", nargs="*", default=["sinusoid-maml", "omniglot-maml"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="PyTorch intra-op threads; 0 = its default")
    ap.add_argument("--gc", choices=["default", "frozen"], default="default")
    ap.add_argument("--out", type=Path, default=None, help="append one JSON line per learner here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    registry = load_registry(REPO / "models", args.device)
    if args.gc == "frozen":
        gc.freeze()
    for name in args.only:
        learner = registry.learners[name].learner
        xs, ys, ways = tasks(name, args.batch, args.device)
        row = {"learner": name, "device": args.device, "batch": args.batch, "gc": args.gc,
               "torch_threads": torch.get_num_threads(), "gc_tracked_objects": len(gc.get_objects()),
               "frozen_objects": gc.get_freeze_count()}
        for mode in ("loop", "vmap"):
            row[mode] = measure(learner, xs, ys, ways, mode, args.rounds, args.device)
        print(f"{name:16s} {args.device:5s} threads={row['torch_threads']:2d} gc={args.gc:7s} "
              f"loop {row['loop']['tasks_per_s_median']:8.1f}/s  vmap {row['vmap']['tasks_per_s_median']:8.1f}/s  "
              f"vmap ms/task min/med/max {row['vmap']['ms_per_task_min_median_max']}  "
              f"gc ms in vmap rounds {[r['gc_ms'] for r in row['vmap']['rounds']]}", flush=True)
        if args.out:
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
