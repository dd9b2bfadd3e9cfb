"""Mixed load through the balancer of the local cluster (2 API replicas, 2 workers) while one
worker and one API replica are SIGKILLed and restarted: counts of 5xx, other failures and
lost IDs, and job latency (enqueue -> ready) against synchronous adaptation.

    python -m benchmarks.cluster_kills [--seconds 60] [--clients 16]

Needs the machine's PostgreSQL (METASERVE_DATABASE_URL, default the cluster's), nginx and
SeaweedFS; writes ``benchmarks/results/cluster_kills.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from app.core.ports import free_port, free_port_run
from deploy.local_cluster import Cluster

RESULTS = Path(__file__).resolve().parent / "results"
SINE = {"meta_learner": "sinusoid-maml",
        "support": {"inputs": [[-4.0], [-2.0], [0.0], [1.5], [3.0]], "targets": [1.9, -1.2, -0.9, 1.6, 1.2]}}


def drop_database(url: str) -> None:
    from sqlalchemy import create_engine, text  # noqa: PLC0415
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    parsed = make_url(url)
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}"'))
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    api_port = free_port_run(2)
    database = os.environ.get("METASERVE_DATABASE_URL",
                              f"postgresql+psycopg://postgres@127.0.0.1:5432/bench_{uuid.uuid4().hex[:8]}")
    cluster = Cluster(root=Path(tempfile.mkdtemp(prefix="metaserve-cluster-")), port=free_port(),
                      api_port=api_port, replicas=2, workers=2, database_url=database,
                      env={**os.environ, "METASERVE_AUTH_ENABLED": "false", "METASERVE_LOG_LEVEL": "warning",
                           "METASERVE_JOB_LEASE_SECONDS": "3", "METASERVE_RATE_LIMIT_PER_MINUTE": "0",
                           "METASERVE_MAX_REQUESTS_PER_CLIENT": "0"})
    statuses: Counter[str] = Counter()
    acknowledged: list[str] = []
    sync_ms: list[float] = []
    job_ms: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()

    def record(kind: str, status: int) -> None:
        with lock:
            statuses[f"{kind} {status}"] += 1

    def client_loop(seed: int) -> None:
        with httpx.Client(base_url=cluster.url, timeout=120) as client:
            k = 0
            while not stop.is_set():
                k += 1
                asynchronous = k % 4 == 0
                body = {**SINE, "options": {"ttl_seconds": 3600 + seed * 100_000 + k}}
                headers = {"Idempotency-Key": f"{seed}-{k}-{uuid.uuid4().hex[:8]}"}
                if asynchronous:
                    headers["Prefer"] = "respond-async"
                t0 = time.perf_counter()
                r = client.post("/v1/adapted-models", json=body, headers=headers)
                record("create", r.status_code)
                if r.status_code not in (201, 202):
                    continue
                ident = r.json()["id"]
                with lock:
                    acknowledged.append(ident)
                if asynchronous:
                    while (s := client.get(f"/v1/adapted-models/{ident}")).status_code == 200 and \
                            s.json()["status"] in ("queued", "running"):
                        time.sleep(0.005)
                    record("job", 200 if s.json().get("status") == "ready" else 500)
                    job_ms.append((time.perf_counter() - t0) * 1000)
                else:
                    sync_ms.append((time.perf_counter() - t0) * 1000)
                p = client.post(f"/v1/adapted-models/{ident}/predictions", json={"inputs": [[0.0]]})
                record("predict", p.status_code)

    try:
        cluster.up()
        with ThreadPoolExecutor(args.clients) as pool:
            for seed in range(args.clients):
                pool.submit(client_loop, seed)
            third = args.seconds / 3
            time.sleep(third)
            cluster.kill("worker-0", signal.SIGKILL)
            cluster.kill("api-0", signal.SIGKILL)
            time.sleep(third / 2)
            cluster.start_worker(0)
            cluster.start_replica(0)
            time.sleep(third * 1.5)
            stop.set()
        with httpx.Client(base_url=cluster.url, timeout=30) as client:
            lost = [i for i in acknowledged if client.get(f"/v1/adapted-models/{i}").status_code != 200]
    finally:
        stop.set()
        cluster.down()
        if "METASERVE_DATABASE_URL" not in os.environ:
            drop_database(database)
    server_errors = sum(n for key, n in statuses.items() if int(key.split()[1]) >= 500)
    report = {"seconds": args.seconds, "clients": args.clients, "statuses": dict(statuses),
              "server_errors": server_errors, "acknowledged_ids": len(acknowledged), "lost_ids": len(lost),
              "sync_adapt_p50_ms": round(statistics.median(sync_ms), 1),
              "job_enqueue_to_ready_p50_ms": round(statistics.median(job_ms), 1),
              "killed": ["worker-0", "api-0"], "killed_at_s": round(third, 1),
              "restarted_at_s": round(third * 1.5, 1)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cluster_kills.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
