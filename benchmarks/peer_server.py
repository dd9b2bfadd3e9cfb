"""Metaserve beside the FastAPI server a user would write around learn2learn, in one run.

    bash "$METASERVE_PEERS_DIR/install_peers.sh" ~/.cache/metaserve-peers-venv     # once
    ~/.cache/metaserve-peers-venv/bin/pip install fastapi uvicorn                    # once
    python -m benchmarks.peer_server [--rounds 3] [--tasks 200] [--clients 32] [--auth on|off]

The work: sinusoid MAML, 5 shots, 10 inner steps, then 100 predictions (``benchmarks.peer``'s
tasks and bodies). Servers, all up for the whole run on this machine: the naive server
(``$METASERVE_PEERS_DIR/naive_server.py``: FastAPI + learn2learn, adapted states in a dict), the
same with ``DURABLE=1`` (each state also written to a file with fsync, as Metaserve's store does),
and Metaserve (uvicorn, SQLite, its file store, an API key unless ``--auth off``; rate limits off,
since one client address sends everything). One client: httpx, one connection per client thread.
Each round measures every server in turn (the order rotates between rounds): sequential tasks
(p50 of the two requests' wall time, and of each request), then ``--clients`` concurrent clients
(wall time / tasks), each with the server process's CPU time per task (user + system, from
``/proc``: what the server spends, whatever the client costs); learn2learn in-process
(``l2l_peer.py``) once per round. Figures are the
median over rounds with their min-max; ratios are taken within each round, then summarised the
same way. Metaserve also answers its default request (options left out: sinusoid-maml's newest
version chooses its steps, ``auto``) each round, timed with the mean steps chosen, and its own
cost per request (``benchmarks.peer.overhead_rows``: a small adaptation minus its compute, a
10-input prediction). With
``--photos DIR`` (default ``$METASERVE_IMAGES_DIR/dtd10`` when it exists;
``--photos none`` skips it), the same Metaserve server also serves photo-protonet: 5-way 5-shot
adaptations and 1- and 16-photo predictions of new 640x480 JPEGs each round, beside the in-process
cost of one photo (decode + resize, backbone), so the service's share of a photo request shows.
``--baseline LABEL=CHECKOUT`` also serves an older commit's Metaserve in the same rounds (before/after
ratios taken round by round). Writes ``benchmarks/results/peer_server.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import threading
import time
from datetime import date
from pathlib import Path

import httpx
import torch

from app.core.ports import free_port
from benchmarks.peer import (
    PEER_SCRIPT,
    PEERS_DIR,
    QUERIES,
    SHOTS,
    STEPS,
    one_task,
    overhead_rows,
    peer_ms,
    task_bodies,
)
from benchmarks.server import REPO, BenchServer

RESULTS = Path(__file__).resolve().parent / "results"
NAIVE_SCRIPT = PEERS_DIR / "naive_server.py"
WARM = 20


class NaiveServer:
    """``naive_server.py`` in the peers environment, on a free port."""

    def __init__(self, python: str, durable: bool) -> None:
        self.python, self.durable, self.port = python, durable, free_port()
        self.proc: subprocess.Popen | None = None
        self.headers: dict[str, str] = {}

    def __enter__(self) -> str:
        if not NAIVE_SCRIPT.is_file():
            raise SystemExit(f"{NAIVE_SCRIPT} not found: set METASERVE_PEERS_DIR to the peer scripts' folder")
        env = {**os.environ, "PORT": str(self.port), "DURABLE": "1" if self.durable else "0",
               "THREADS": str(os.cpu_count() or 1)}
        self.proc = subprocess.Popen([self.python, str(NAIVE_SCRIPT)], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("the naive server stopped (pip install fastapi uvicorn in the peers "
                                 f"environment?): {self.proc.stderr.read().decode()[-1500:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    return url
            except httpx.HTTPError:
                time.sleep(0.2)
        raise TimeoutError("the naive server did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its waited-for children (``/proc``; Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def sequential(url: str, headers: dict, tasks: int, seed: int) -> dict:
    """p50 ms of a task (adapt + predict 100) and of each request, after a warm-up."""
    rng = torch.Generator().manual_seed(seed)
    task, adapt, predict = [], [], []
    with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
        for i in range(tasks + WARM):
            create, query = task_bodies(rng)
            t0 = time.perf_counter()
            r = client.post("/v1/adapted-models", json=create)
            t1 = time.perf_counter()
            r.raise_for_status()
            client.post(f"/v1/adapted-models/{r.json()['id']}/predictions", json=query).raise_for_status()
            t2 = time.perf_counter()
            if i >= WARM:
                task.append(t2 - t0)
                adapt.append(t1 - t0)
                predict.append(t2 - t1)
    return {"task_ms": 1000 * statistics.median(task), "adapt_ms": 1000 * statistics.median(adapt),
            "predict_100_ms": 1000 * statistics.median(predict)}


def default_request(url: str, headers: dict, tasks: int, seed: int) -> dict:
    """Metaserve's default request (options left out: sinusoid-maml's newest version chooses its
    steps, ``auto``): p50 ms of the adaptation and the mean steps chosen."""
    rng = torch.Generator().manual_seed(seed)
    times, steps = [], []
    with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
        for i in range(tasks + WARM):
            create, _ = task_bodies(rng)
            create = {k: v for k, v in create.items() if k != "options"}
            t0 = time.perf_counter()
            r = client.post("/v1/adapted-models", json=create)
            elapsed = time.perf_counter() - t0
            r.raise_for_status()
            if i >= WARM:
                times.append(elapsed)
                steps.append(r.json()["adaptation"]["steps"])
    return {"default_request_adapt_ms": 1000 * statistics.median(times),
            "default_request_mean_steps": statistics.fmean(steps)}


def concurrent_tasks(tasks: int, clients: int) -> int:
    """How many tasks :func:`concurrent` sends in all."""
    return max(tasks // clients, 4) * clients


def concurrent(url: str, headers: dict, tasks: int, clients: int, seed: int) -> float:
    """Wall-clock ms per task with ``clients`` client threads sending tasks back to back."""
    per_client = concurrent_tasks(tasks, clients) // clients
    errors: list[BaseException] = []

    def loop(index: int) -> None:
        rng = torch.Generator().manual_seed(seed * 1000 + index)
        try:
            with httpx.Client(base_url=url, timeout=120, headers=headers) as client:
                for _ in range(per_client):
                    one_task(client, rng)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed: {errors[0]!r}")
    return 1000 * wall / (per_client * clients)


def photo_rows(url: str, headers: dict, photos, requests: int) -> dict:
    """p50 ms of photo-protonet over HTTP: adapt 5x5, predict 1 and 16 new photos."""
    adapt, one, sixteen = [], [], []
    with httpx.Client(base_url=url, timeout=300, headers=headers) as client:
        for i in range(requests + 2):
            support = photos.task()
            t0 = time.perf_counter()
            r = client.post("/v1/adapted-models", json={"meta_learner": "photo-protonet", "support": support})
            t1 = time.perf_counter()
            r.raise_for_status()
            path = f"/v1/adapted-models/{r.json()['id']}/predictions"
            labels = support["targets"][::5]
            single = {"inputs": [photos.jpeg(labels[i % 5])]}
            batch = {"inputs": [photos.jpeg(labels[k % 5]) for k in range(16)]}
            t2 = time.perf_counter()
            client.post(path, json=single).raise_for_status()
            t3 = time.perf_counter()
            client.post(path, json=batch).raise_for_status()
            t4 = time.perf_counter()
            if i >= 2:
                adapt.append(t1 - t0)
                one.append(t3 - t2)
                sixteen.append(t4 - t3)
    return {"photo_adapt_5x5_ms": 1000 * statistics.median(adapt),
            "photo_predict_1_ms": 1000 * statistics.median(one),
            "photo_predict_16_ms": 1000 * statistics.median(sixteen)}


def summary(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "runs": [round(v, 3) for v in values]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--peer-python", default=str(Path.home() / ".cache/metaserve-peers-venv/bin/python"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--auth", choices=("on", "off"), default="on",
                        help="Metaserve with an API key on every request (as deployed) or keys off")
    parser.add_argument("--photos", default=None, help="photo class folders; 'none' skips the photo rows")
    parser.add_argument("--photo-requests", type=int, default=10)
    parser.add_argument("--metaserve-repo", type=Path, default=None,
                        help="serve Metaserve from this checkout instead of this one")
    parser.add_argument("--baseline", action="append", default=[], metavar="LABEL=CHECKOUT",
                        help="also serve Metaserve from another checkout (an older commit: "
                        "before/after in the same rounds); repeatable")
    parser.add_argument("--out", type=Path, default=RESULTS / "peer_server.json")
    args = parser.parse_args()
    photos = None
    if args.photos != "none":
        from benchmarks.photo_latency import Photos  # noqa: PLC0415 - only with photos
        from metaserve_train.config import images_dir  # noqa: PLC0415

        folder = Path(args.photos) if args.photos else images_dir() / "dtd10"
        if folder.is_dir():
            photos = Photos(folder)
        elif args.photos:
            raise SystemExit(f"{folder}: no such folder of photo classes")
    if not PEER_SCRIPT.is_file():
        raise SystemExit(f"{PEER_SCRIPT} not found: set METASERVE_PEERS_DIR")
    def metaserve_of(repo: Path) -> BenchServer:
        return BenchServer(repo=repo, METASERVE_AUTH_ENABLED="true" if args.auth == "on" else "false",
                           METASERVE_RATE_LIMIT_PER_MINUTE="0", METASERVE_MAX_REQUESTS_PER_CLIENT="0")

    metaserve = metaserve_of(args.metaserve_repo or REPO)
    servers = {"naive": NaiveServer(args.peer_python, durable=False),
               "naive_durable": NaiveServer(args.peer_python, durable=True), "metaserve": metaserve}
    baselines = {}
    for given in args.baseline:
        label, _, checkout = given.partition("=")
        if not label or not Path(checkout).is_dir():
            raise SystemExit(f"--baseline {given!r}: expected LABEL=CHECKOUT (a folder)")
        baselines[f"metaserve_{label}"] = checkout
        servers[f"metaserve_{label}"] = metaserve_of(Path(checkout))
    rows: dict[str, dict[str, list[float]]] = {name: {} for name in [*servers, "learn2learn_in_process"]}
    urls = {name: server.__enter__() for name, server in servers.items()}
    try:
        names = list(servers)
        for r in range(args.rounds):
            rows["learn2learn_in_process"].setdefault("task_ms", []).append(peer_ms(args.peer_python, args.tasks))
            for name in names[r % len(names):] + names[:r % len(names)]:
                headers, pid = servers[name].headers, servers[name].proc.pid
                cpu0 = cpu_seconds(pid)
                for key, value in sequential(urls[name], headers, args.tasks, seed=r).items():
                    rows[name].setdefault(key, []).append(value)
                cpu1 = cpu_seconds(pid)
                per_task = concurrent(urls[name], headers, args.tasks, args.clients, seed=r)
                cpu2 = cpu_seconds(pid)
                rows[name].setdefault(f"concurrent_{args.clients}_ms_per_task", []).append(per_task)
                rows[name].setdefault("server_cpu_ms_per_task_sequential", []).append(
                    1000 * (cpu1 - cpu0) / (args.tasks + WARM))
                rows[name].setdefault(f"server_cpu_ms_per_task_{args.clients}_clients", []).append(
                    1000 * (cpu2 - cpu1) / concurrent_tasks(args.tasks, args.clients))
            for name in ["metaserve", *baselines]:
                url, headers = urls[name], servers[name].headers
                measured = default_request(url, headers, args.tasks // 2, seed=r)
                with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
                    measured.update(overhead_rows(client, torch.Generator().manual_seed(r), args.tasks // 2))
                for key, value in measured.items():
                    rows[name].setdefault(key, []).append(value)
            if photos is not None:
                for key, value in photo_rows(urls["metaserve"], metaserve.headers, photos,
                                             args.photo_requests).items():
                    rows["metaserve"].setdefault(key, []).append(value)
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(
                f"{n} {rows[n]['task_ms'][-1]:.2f}" for n in rows), flush=True)
    finally:
        for server in servers.values():
            server.__exit__(None, None, None)

    def ratios(over: str, key: str, under_key: str | None = None, server: str = "metaserve") -> dict:
        mine, theirs = rows[server][key], rows[over][under_key or key]
        return summary([a / b for a, b in zip(mine, theirs, strict=True)])

    many = f"concurrent_{args.clients}_ms_per_task"
    if photos is not None:  # in process, after the servers stopped: one photo's own compute
        from benchmarks.photo_latency import in_process_phases  # noqa: PLC0415

        phases = in_process_phases(photos)
        rows["photo_in_process_one_photo"] = {
            "decode_and_preprocess_ms": [phases["decode_and_preprocess"]["p50_ms"]],
            "backbone_ms": [phases["backbone_one_photo"]["p50_ms"]]}
    report = {
        "date": date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.platform()}", "torch_threads_of_the_naive_server": os.cpu_count(),
        "work": f"sinusoid MAML, {SHOTS} shots, {STEPS} steps, then {QUERIES} predictions",
        "metaserve": f"uvicorn, SQLite, file store, keys {args.auth}, rate limits off",
        "rounds": args.rounds, "tasks_per_measure": args.tasks, "clients": args.clients,
        "rows_ms": {name: {k: summary(v) for k, v in row.items()} for name, row in rows.items()},
        "ratios": {
            "sequential_vs_naive_durable": ratios("naive_durable", "task_ms"),
            f"{args.clients}_clients_vs_naive_durable": ratios("naive_durable", many),
            "sequential_vs_naive": ratios("naive", "task_ms"),
            f"{args.clients}_clients_vs_naive": ratios("naive", many),
            "sequential_vs_learn2learn_in_process": ratios("learn2learn_in_process", "task_ms"),
            f"{args.clients}_clients_vs_learn2learn_in_process": ratios("learn2learn_in_process", many, "task_ms"),
            "server_cpu_sequential_vs_naive_durable": ratios("naive_durable", "server_cpu_ms_per_task_sequential"),
            f"server_cpu_{args.clients}_clients_vs_naive_durable": ratios(
                "naive_durable", f"server_cpu_ms_per_task_{args.clients}_clients"),
        }}
    for name, checkout in baselines.items():
        commit = subprocess.run(["git", "-C", checkout, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        report["metaserve"] += f"; {name}: the same, served from commit {commit or checkout}"
        report["ratios"].update({
            f"sequential_vs_{name}": ratios(name, "task_ms"),
            f"{args.clients}_clients_vs_{name}": ratios(name, many),
            f"default_request_adapt_vs_{name}": ratios(name, "default_request_adapt_ms"),
            f"{name}_sequential_vs_naive_durable": ratios("naive_durable", "task_ms", server=name),
            f"{name}_{args.clients}_clients_vs_naive_durable": ratios("naive_durable", many, server=name)})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for name, row in report["rows_ms"].items():
        print(f"{name:28s} " + "  ".join(f"{k} {v['median']:.2f} [{v['min']:.2f}-{v['max']:.2f}]"
                                          for k, v in row.items()))
    for name, ratio in report["ratios"].items():
        print(f"{name:45s} {ratio['median']:.2f} [{ratio['min']:.2f}-{ratio['max']:.2f}]")


if __name__ == "__main__":
    main()
