"""Metaserve against its peer, learn2learn in-process, in one run on one machine.

    bash "$METASERVE_PEERS_DIR/install_peers.sh" ~/.cache/metaserve-peers-venv    # once
    python -m benchmarks.peer [--peer-python ~/.cache/metaserve-peers-venv/bin/python] [--tasks 200]

The work: sinusoid MAML, 5 shots, 10 inner steps, then 100 predictions. Rows: learn2learn
in-process (``$METASERVE_PEERS_DIR/l2l_peer.py``: the peer scripts folder of the benchmark
environment, which builds learn2learn where plain pip cannot), Metaserve's library in-process (the shipped
sinusoid-maml), the HTTP floor (the same two requests against a bare ASGI app on the same
client and server stack, ``benchmarks/http_floor.py``), Metaserve over HTTP sequentially
(adapt + predict per task, p50) and with 32 concurrent clients (wall time / tasks), plus the
per-request overhead of a small adaptation and of a 10-input prediction. Writes
``benchmarks/results/peer-<N>p.json`` with service ÷ peer ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import threading
import time
from pathlib import Path

import httpx
import torch

from benchmarks.http_floor import FloorServer
from benchmarks.server import BenchServer

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
PEERS_DIR = Path(os.environ.get("METASERVE_PEERS_DIR", "peers"))
PEER_SCRIPT = PEERS_DIR / "l2l_peer.py"
SHOTS, STEPS, QUERIES = 5, 10, 100


def sine_task(rng: torch.Generator) -> tuple[list, list, list]:
    amp = float(torch.empty(1).uniform_(0.1, 5, generator=rng))
    phase = float(torch.empty(1).uniform_(0, math.pi, generator=rng))
    xs = torch.empty(SHOTS).uniform_(-5, 5, generator=rng).tolist()
    queries = torch.linspace(-5, 5, QUERIES).tolist()
    return [[x] for x in xs], [amp * math.sin(x - phase) for x in xs], [[q] for q in queries]


def peer_ms(python: str, tasks: int) -> float:
    if not PEER_SCRIPT.is_file():
        raise SystemExit(f"{PEER_SCRIPT} not found: set METASERVE_PEERS_DIR to the folder of the peer scripts")
    out = subprocess.run([python, str(PEER_SCRIPT), "--shots", str(SHOTS), "--steps", str(STEPS),
                          "--queries", str(QUERIES), "--threads", str(os.cpu_count() or 1),
                          "--tasks", str(tasks)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["ms_per_task_p50"]


def library_ms(tasks: int) -> float:
    from app.meta.algorithms import AdaptOptions  # noqa: PLC0415
    from app.meta.checkpoint import load_meta_learner  # noqa: PLC0415

    learner, _ = load_meta_learner(REPO / "models" / "sinusoid-maml")
    rng = torch.Generator().manual_seed(1)
    times = []
    for i in range(tasks + 20):
        x, y, q = sine_task(rng)
        t0 = time.perf_counter()
        state = learner.adapt(torch.tensor(x), torch.tensor(y).unsqueeze(-1), 0, AdaptOptions(steps=STEPS))
        learner.predict(state, torch.tensor(q)).tolist()
        if i >= 20:
            times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def task_bodies(rng: torch.Generator) -> tuple[dict, dict]:
    """One task's two request bodies: the adaptation, then the queries to predict."""
    x, y, q = sine_task(rng)
    return ({"meta_learner": "sinusoid-maml", "support": {"inputs": x, "targets": y},
             "options": {"steps": STEPS}}, {"inputs": q})


def one_task(client: httpx.Client, rng: torch.Generator) -> None:
    create, query = task_bodies(rng)
    r = client.post("/v1/adapted-models", json=create)
    r.raise_for_status()
    client.post(f"/v1/adapted-models/{r.json()['id']}/predictions", json=query).raise_for_status()


def floor_ms(tasks: int) -> float:
    """p50 of one task's two requests (the adaptation body, then 100 query points) against
    the bare ASGI app of ``benchmarks.http_floor``: what the client and HTTP stack alone cost."""
    rng = torch.Generator().manual_seed(2)
    times = []
    with FloorServer() as url, httpx.Client(base_url=url, timeout=60) as client:
        for i in range(tasks + 20):
            t0 = time.perf_counter()
            one_task(client, rng)  # the service's requests, exactly
            if i >= 20:
                times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def http_rows(url: str, tasks: int, clients: int) -> dict:
    rng = torch.Generator().manual_seed(2)
    seq = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(tasks + 20):
            t0 = time.perf_counter()
            one_task(client, rng)
            if i >= 20:
                seq.append(time.perf_counter() - t0)
        overheads = overhead_rows(client, rng, tasks)
    done = 0
    lock = threading.Lock()
    per_client = max(tasks // clients, 4)

    def loop(seed: int) -> None:
        nonlocal done
        local = torch.Generator().manual_seed(100 + seed)
        with httpx.Client(base_url=url, timeout=120) as client:
            for _ in range(per_client):
                one_task(client, local)
                with lock:
                    done += 1

    threads = [threading.Thread(target=loop, args=(s,)) for s in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"sequential_ms_per_task_p50": 1000 * statistics.median(seq),
            f"concurrent_{clients}_ms_per_task": 1000 * wall / done,
            **overheads}


def overhead_rows(client: httpx.Client, rng: torch.Generator, tasks: int) -> dict:
    """The service's own cost per request, p50 ms after a warm-up: a small adaptation's wall
    time minus the compute it reports (sinusoid-hypernet: one forward), and a prediction of
    10 inputs."""
    adapt_overhead, predict10 = [], []
    for i in range(tasks + 20):
        x, y, _ = sine_task(rng)
        t0 = time.perf_counter()
        r = client.post("/v1/adapted-models", json={"meta_learner": "sinusoid-hypernet",
                                                    "support": {"inputs": x, "targets": y}})
        wall = time.perf_counter() - t0
        r.raise_for_status()
        t0 = time.perf_counter()
        client.post(f"/v1/adapted-models/{r.json()['id']}/predictions",
                    json={"inputs": [[v / 3] for v in range(10)]}).raise_for_status()
        if i >= 20:
            adapt_overhead.append(wall * 1000 - r.json()["adaptation"]["duration_ms"])
            predict10.append((time.perf_counter() - t0) * 1000)
    return {"adapt_overhead_ms_p50": statistics.median(adapt_overhead),
            "predict_10_ms_p50": statistics.median(predict10)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--peer-python", default=str(Path.home() / ".cache/metaserve-peers-venv/bin/python"))
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--processes", type=int, default=1, help="METASERVE_PROCESSES of the server")
    args = parser.parse_args()
    peer = peer_ms(args.peer_python, args.tasks)
    library = library_ms(args.tasks)
    floor = floor_ms(args.tasks)
    with BenchServer(METASERVE_AUTH_ENABLED="false", METASERVE_RATE_LIMIT_PER_MINUTE="0",
                     METASERVE_MAX_REQUESTS_PER_CLIENT="0", METASERVE_PROCESSES=str(args.processes)) as url:
        service = http_rows(url, args.tasks, args.clients)
    concurrent = service[f"concurrent_{args.clients}_ms_per_task"]
    report = {"work": f"sinusoid MAML, {SHOTS} shots, {STEPS} steps, {QUERIES} predictions",
              "cpus": os.cpu_count(), "server_processes": args.processes,
              "learn2learn_in_process_ms": round(peer, 3),
              "metaserve_library_ms": round(library, 3),
              "http_floor_sequential_ms": round(floor, 3),
              **{k: round(v, 3) for k, v in service.items()},
              "ratios_vs_learn2learn": {
                  "library": round(library / peer, 2),
                  "http_floor": round(floor / peer, 2),
                  "http_sequential": round(service["sequential_ms_per_task_p50"] / peer, 2),
                  f"http_{args.clients}_clients": round(concurrent / peer, 2)}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"peer-{args.processes}p.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
