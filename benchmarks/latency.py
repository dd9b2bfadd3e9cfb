"""Adaptation and prediction latency per shipped meta-learner over HTTP (p50/p99).

    python -m benchmarks.latency [--requests 200] [--database-url URL] [--only NAME ...]
        [--out DIR] [--label NAME]

The server takes its settings from the environment (``METASERVE_DEVICE=cuda``,
``METASERVE_BATCHING=off``, ...); ``--label`` names the result files
(``latency-<label>.json``) so that runs under different settings sit side by side.

Starts a real uvicorn server of this checkout, sends N sequential adaptation requests and N
prediction requests per meta-learner (tasks drawn from each learner's own family), and writes
``benchmarks/results/latency.json`` and ``latency.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks.server import BenchServer
from benchmarks.workloads import WORKLOADS, OmniglotPngs, make_task

RESULTS = Path(__file__).resolve().parent / "results"


def gpu_name() -> str | None:
    """The GPU the server's METASERVE_DEVICE names, for the results' header."""
    if not os.environ.get("METASERVE_DEVICE", "cpu").startswith("cuda"):
        return None
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.array(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
            "mean_ms": round(float(a.mean()), 2), "n": len(ms)}


def run(url: str, name: str, n: int, pngs: OmniglotPngs | None, headers: dict[str, str]) -> dict:
    rng = random.Random(0)
    client = httpx.Client(base_url=url, timeout=120, headers=headers)
    tasks = [make_task(name, rng, pngs) for _ in range(n + 5)]
    adapt_ms, predict_ms, compute_ms, ids, steps = [], [], [], [], []
    for i, (support, _) in enumerate(tasks):
        t0 = time.perf_counter()
        r = client.post("/v1/adapted-models", json={"meta_learner": name, "support": support})
        elapsed = (time.perf_counter() - t0) * 1000
        r.raise_for_status()
        if i >= 5:  # warm-up
            adapt_ms.append(elapsed)
            compute_ms.append(r.json()["adaptation"]["duration_ms"])
            steps.append(r.json()["adaptation"]["steps"])
        ids.append(r.json()["id"])
    for i, (ident, (_, query)) in enumerate(zip(ids, tasks)):
        t0 = time.perf_counter()
        r = client.post(f"/v1/adapted-models/{ident}/predictions", json=query)
        elapsed = (time.perf_counter() - t0) * 1000
        r.raise_for_status()
        if i >= 5:
            predict_ms.append(elapsed)
    return {"adapt_http": percentiles(adapt_ms), "adapt_compute": percentiles(compute_ms),
            "predict_http": percentiles(predict_ms), "support": WORKLOADS[name],
            "queries_per_request": len(tasks[0][1]["inputs"]),
            "steps_median": float(np.median(steps)) if steps else None}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(10, 4))
    for off, key, label in ((-0.2, "adapt_http", "adapt"), (0.2, "predict_http", "predict")):
        ax.bar(x + off, [results[n][key]["p50_ms"] for n in names], 0.4, label=f"{label} p50")
        ax.scatter(x + off, [results[n][key]["p99_ms"] for n in names], marker="_", s=300,
                   color="k", label=f"{label} p99" if off < 0 else None)
    ax.set_xticks(x, names, rotation=20)
    ax.set_yscale("log")
    ax.set_ylabel("ms over HTTP")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--only", nargs="*", default=list(WORKLOADS))
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and the plot")
    ap.add_argument("--label", default="", help="result files latency-<label>.json/.png")
    args = ap.parse_args()
    pngs = OmniglotPngs() if any(n.startswith("omniglot") for n in args.only) else None
    results = {}
    server = BenchServer(args.database_url, METASERVE_RATE_LIMIT_PER_MINUTE="0")
    with server as url:  # with authentication on, as deployed: each request checks its key
        for name in args.only:
            results[name] = run(url, name, args.requests, pngs, server.headers)
            r = results[name]
            a, p = r["adapt_http"], r["predict_http"]
            print(f"{name:20s} adapt p50 {a['p50_ms']:8.2f} ms  p99 {a['p99_ms']:8.2f} ms | "
                  f"predict p50 {p['p50_ms']:7.2f} ms  p99 {p['p99_ms']:7.2f} ms", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"latency-{args.label}" if args.label else "latency"
    previous = args.out / f"{stem}.json"
    if previous.exists() and set(args.only) != set(WORKLOADS):  # a partial rerun updates its rows
        results = {**json.loads(previous.read_text())["results"], **results}
    meta = {"machine": f"{platform.machine()} {platform.processor()}".strip(),
            "cpus": os.cpu_count(), "database": args.database_url or "sqlite",
            "requests": args.requests, "device": os.environ.get("METASERVE_DEVICE", "cpu"),
            "batching": os.environ.get("METASERVE_BATCHING", "auto"), "gpu": gpu_name()}
    (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    plot(results, args.out / f"{stem}.png")


if __name__ == "__main__":
    main()
