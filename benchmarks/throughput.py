"""Throughput of adaptation under concurrency, batching on vs off, against the in-process floor;
and batched prediction across many adapted models vs one model at a time.

    python -m benchmarks.throughput [--seconds 15] [--clients 1 8 32] [--only NAME ...]
        [--batching on off auto] [--device cuda] [--out DIR] [--label NAME]

Writes ``benchmarks/results/throughput.json`` and ``throughput.png`` (``throughput-<label>``
with ``--label``). ``--device`` runs the in-process floor and the server on that device.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import threading
import time
from pathlib import Path

import httpx
import torch

from app.engine.registry import load_registry
from benchmarks.server import REPO, BenchServer
from benchmarks.vmap_floor import adapt_round, sync, tasks
from benchmarks.workloads import OmniglotPngs, make_task

RESULTS = Path(__file__).resolve().parent / "results"


def in_process_floor(name: str, batch: int = 32, seconds: float = 5.0,
                     device: str = "cpu") -> dict[str, float]:
    """Adaptations per second calling the algorithm directly: a loop, and one vmapped batch."""
    learner = load_registry(REPO / "models", device).learners[name].learner
    xs, ys, ways = tasks(name, batch, device)
    out = {}
    for mode in ("loop", "vmap"):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            adapt_round(learner, xs, ys, ways, mode, device)
            n += batch
        out[f"{mode}_tasks_per_s"] = round(n / (time.perf_counter() - t0), 1)
    return out


def prediction_scaling(name: str, counts=(1, 64, 1000), queries: int = 10,
                       device: str = "cpu") -> dict:
    """Predictions for K distinct adapted models: one vmapped call vs K calls."""
    learner = load_registry(REPO / "models", device).learners[name].learner
    out = {}
    for k in counts:
        xs = (torch.rand(k, 5, 1) * 10 - 5).to(device)
        states = learner.adapt_batch(xs, torch.sin(xs))
        qx = (torch.rand(k, queries, 1) * 10 - 5).to(device)
        learner.predict_batch(states, qx)  # first call of this shape: kernels and caches
        sync(device)
        t0 = time.perf_counter()
        learner.predict_batch(states, qx)
        sync(device)
        batched = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(k):
            learner.predict({n: v[i] for n, v in states.items()}, qx[i])
        sync(device)
        looped = time.perf_counter() - t0
        out[k] = {"batched_ms": round(batched * 1000, 2), "loop_ms": round(looped * 1000, 2),
                  "speedup": round(looped / batched, 2)}
    return out


def adapt_batch_sizes(url: str) -> dict[str, float]:
    """The server's achieved adaptation micro-batch sizes (its /metrics histogram)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    values = {}
    for line in text.splitlines():
        if line.startswith("metaserve_batch_size_") and 'kind="adapt"' in line:
            metric, value = line.rsplit(" ", 1)
            if metric.startswith("metaserve_batch_size_sum"):
                values["sum"] = float(value)
            elif metric.startswith("metaserve_batch_size_count"):
                values["batches"] = float(value)
    batches = values.get("batches", 0.0)
    return {"batches": batches, "mean_batch": round(values.get("sum", 0.0) / batches, 2) if batches else 0.0}


def service_throughput(name: str, clients: int, seconds: float, batching: str,
                       pngs: OmniglotPngs | None, device: str = "cpu",
                       batch_sizes: dict | None = None) -> float:
    with BenchServer(None, METASERVE_AUTH_ENABLED="false", METASERVE_RATE_LIMIT_PER_MINUTE="0",
                     METASERVE_BATCHING=batching, METASERVE_MAX_QUEUE="256",
                     METASERVE_DEVICE=device) as url:
        done = [0]
        lock = threading.Lock()
        deadline = time.monotonic() + seconds

        def client(seed: int) -> None:
            rng = random.Random(seed)
            c = httpx.Client(base_url=url, timeout=60)
            tasks = [make_task(name, rng, pngs)[0] for _ in range(20)]
            i = 0
            while time.monotonic() < deadline:
                r = c.post("/v1/adapted-models", json={"meta_learner": name, "support": tasks[i % 20]})
                i += 1
                if r.status_code == 201:
                    with lock:
                        done[0] += 1

        threads = [threading.Thread(target=client, args=(s,)) for s in range(clients)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rate = round(done[0] / (time.monotonic() - t0), 1)
        if batch_sizes is not None:
            batch_sizes.update(adapt_batch_sizes(url))
        return rate


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["learners"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        entry = report["learners"][name]
        clients = [int(c) for c in entry["service"]]
        for mode in ("on", "off", "auto"):
            key = f"batching_{mode}_rps"
            if key in entry["service"][str(clients[0])]:
                ax.plot(clients, [entry["service"][str(c)][key] for c in clients], marker="o",
                        label=f"batching {mode}")
        ax.axhline(max(entry["in_process_floor"].values()), ls="--", color="k", label="in-process floor")
        ax.set(title=name, xlabel="concurrent clients", ylabel="adaptations / s", xscale="log",
               yscale="log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--clients", type=int, nargs="*", default=[1, 8, 32])
    ap.add_argument("--only", nargs="*", default=["sinusoid-maml", "sinusoid-hypernet", "omniglot-protonet"])
    ap.add_argument("--plot-only", action="store_true", help="redraw the PNG from the last JSON")
    ap.add_argument("--device", default="cpu", help="cpu or cuda: the floor's and the server's")
    ap.add_argument("--floor-seconds", type=float, default=5.0,
                    help="seconds per mode of the in-process floor")
    ap.add_argument("--batching", nargs="*", choices=["on", "off", "auto"], default=["on", "off"],
                    help="METASERVE_BATCHING values to run at each client count ('on' first: "
                         "its mean batch is reported)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and the plot")
    ap.add_argument("--label", default="", help="result files throughput-<label>.json/.png")
    args = ap.parse_args()
    stem = f"throughput-{args.label}" if args.label else "throughput"
    json_path, png_path = args.out / f"{stem}.json", args.out / f"{stem}.png"
    if args.plot_only:
        plot(json.loads(json_path.read_text()), png_path)
        return
    pngs = OmniglotPngs()
    report = {"machine": f"{platform.machine()} {platform.processor()}".strip(),
              "cpus": __import__("os").cpu_count(), "torch_threads": torch.get_num_threads(),
              "device": args.device,
              "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
              "learners": {}}
    for name in args.only:
        floor = in_process_floor(name, seconds=args.floor_seconds, device=args.device)
        rows = {}
        for clients in args.clients:
            best_floor = max(floor.values())
            row: dict = {}
            for mode in args.batching:
                batches: dict = {}
                rate = service_throughput(name, clients, args.seconds, mode, pngs, args.device, batches)
                row[f"batching_{mode}_rps"] = rate
                if mode != "off":
                    row[f"batching_{mode}_mean_batch"] = batches.get("mean_batch")
                    row[f"batching_{mode}_batches"] = batches.get("batches")
            on, off = row.get("batching_on_rps"), row.get("batching_off_rps")
            if on is not None and off:
                row["on_over_off"] = round(on / off, 2)
            if on is not None:
                row["efficiency_vs_floor"] = round(on / best_floor, 3)
            rows[clients] = row
            shown = "  ".join(f"{m} {row[f'batching_{m}_rps']:8.1f}/s" for m in args.batching)
            means = {m: row.get(f"batching_{m}_mean_batch") for m in args.batching if m != "off"}
            print(f"{name:18s} clients={clients:3d}  {shown}  floor {best_floor:8.1f}/s  "
                  f"mean batch {means}", flush=True)
        entry = {"in_process_floor": floor, "service": rows}
        if name.startswith("sinusoid"):
            entry["prediction_scaling"] = prediction_scaling(name, device=args.device)
            print(name, "predictions across K models:", entry["prediction_scaling"], flush=True)
        report["learners"][name] = entry
    args.out.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    plot(json.loads(json_path.read_text()), png_path)  # the keys as the JSON has them


if __name__ == "__main__":
    main()
