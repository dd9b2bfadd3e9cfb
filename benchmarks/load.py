"""Load test: N concurrent clients mixing adaptation and prediction against a real server.

    python -m benchmarks.load --clients 16 --seconds 60 --database-url postgresql+psycopg://...

Each client loops: adapt a new task (70% sinusoid meta-learners, 30% omniglot-protonet with
real evaluation-alphabet PNGs when the data is present), then predict with a random
acknowledged ID. Afterwards every acknowledged ID is asked again and must answer with the same
predictions. Prints requests, errors by status, p50/p99 latency; writes results/load.json.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

from benchmarks.server import BenchServer
from benchmarks.workloads import OmniglotPngs, make_task

RESULTS = Path(__file__).resolve().parent / "results"
MIX = ["sinusoid-maml", "sinusoid-hypernet", "sinusoid-metasgd", "omniglot-protonet"]
WEIGHTS = [0.3, 0.2, 0.2, 0.3]


def flat(preds: list) -> list[float]:
    if preds and isinstance(preds[0], dict):
        return [v for p in preds for v in p["probabilities"].values()]
    return preds


def same_predictions(a: list, b: list) -> bool:
    """Same labels, and numbers equal up to float32 rounding: a micro-batched forward sums in
    another order, and a softmax over squared distances (ProtoNet) amplifies that to ~1e-5."""
    labels = [p.get("label") if isinstance(p, dict) else None for p in a]
    same_labels = labels == [p.get("label") if isinstance(p, dict) else None for p in b]
    return same_labels and bool(np.allclose(flat(a), flat(b), rtol=1e-5, atol=1e-4))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--database-url", default=None)
    args = ap.parse_args()
    pngs = OmniglotPngs()
    lock = threading.Lock()
    latencies: dict[str, list[float]] = {"adapt": [], "predict": []}
    statuses: Counter[int] = Counter()
    acknowledged: dict[str, tuple[dict, list]] = {}
    transport_errors = Counter()

    with BenchServer(args.database_url, METASERVE_AUTH_ENABLED="false",
                     METASERVE_RATE_LIMIT_PER_MINUTE="0") as url:
        deadline = time.monotonic() + args.seconds

        def client(seed: int) -> None:
            rng = random.Random(seed)
            c = httpx.Client(base_url=url, timeout=60)
            while time.monotonic() < deadline:
                name = rng.choices(MIX, WEIGHTS)[0]
                support, query = make_task(name, rng, pngs)
                try:
                    t0 = time.perf_counter()
                    r = c.post("/v1/adapted-models", json={"meta_learner": name, "support": support})
                    with lock:
                        latencies["adapt"].append((time.perf_counter() - t0) * 1000)
                        statuses[r.status_code] += 1
                    if r.status_code != 201:
                        continue
                    ident = r.json()["id"]
                    t0 = time.perf_counter()
                    p = c.post(f"/v1/adapted-models/{ident}/predictions", json=query)
                    with lock:
                        latencies["predict"].append((time.perf_counter() - t0) * 1000)
                        statuses[p.status_code] += 1
                        if p.status_code == 200:
                            acknowledged[ident] = (name, query, p.json()["predictions"])
                except httpx.HTTPError as exc:
                    with lock:
                        transport_errors[type(exc).__name__] += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started

        lost, changed = 0, Counter()
        max_diff: dict[str, float] = {}
        c = httpx.Client(base_url=url, timeout=60)
        for ident, (name, query, predictions) in acknowledged.items():
            r = c.post(f"/v1/adapted-models/{ident}/predictions", json=query)
            if r.status_code != 200:
                lost += 1
                continue
            again = r.json()["predictions"]
            diff = float(np.max(np.abs(np.array(flat(again)) - np.array(flat(predictions)))))
            max_diff[name] = max(max_diff.get(name, 0.0), diff)
            if not same_predictions(again, predictions):
                changed[name] += 1

    total = sum(statuses.values())
    summary = {
        "clients": args.clients, "seconds": round(elapsed, 1), "database": args.database_url or "sqlite",
        "requests": total, "throughput_rps": round(total / elapsed, 1),
        "status_counts": dict(sorted(statuses.items())),
        "errors_5xx": sum(v for k, v in statuses.items() if k >= 500),
        "transport_errors": dict(transport_errors),
        "latency_ms": {k: {"p50": round(float(np.percentile(v, 50)), 1),
                           "p99": round(float(np.percentile(v, 99)), 1), "n": len(v)}
                       for k, v in latencies.items() if v},
        "acknowledged_ids": len(acknowledged), "lost_ids": lost,
        "changed_predictions": dict(changed), "max_abs_difference_on_replay": max_diff,
    }
    print(json.dumps(summary, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "load.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
