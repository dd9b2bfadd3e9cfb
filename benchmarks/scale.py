"""Storage at scale: bytes per adapted model, cold-load latency, get/list at 1k vs 100k models.

    python -m benchmarks.scale [--models 100000] [--database-url URL]

Creates real adapted states (by adapting, in batches) and writes them through the service's
own artifact store, inserts their rows, then times, through the FastAPI app in-process:
GET /v1/adapted-models/{id} and GET /v1/adapted-models?limit=50 at 1,000 and at N models, and
the cold load (read + sha256 check + safetensors decode) of states not in the cache.
Writes benchmarks/results/scale.json.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import torch
from fastapi.testclient import TestClient
from sqlalchemy import insert

from app.core.config import Settings
from app.db.migrate import upgrade
from app.db.models import AdaptedModelRow
from app.db.tenant_usage import claim_model_row
from app.engine.registry import load_registry
from app.main import create_app
from app.storage.artifacts import LocalArtifactStore, encode_state
from benchmarks.server import REPO

RESULTS = Path(__file__).resolve().parent / "results"


def state_sizes() -> dict[str, int]:
    """Bytes of one stored adapted state per shipped meta-learner (5-way for classifiers)."""
    sizes = {}
    for name, reg in load_registry(REPO / "models").learners.items():
        x = torch.rand(5, *reg.input_spec.shape)
        classify = reg.task_type == "classification"
        y = torch.arange(5) if classify else torch.rand(5, 1)
        sizes[name] = len(encode_state(reg.learner.adapt(x, y, 5 if classify else 0)))
    return sizes


def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(values, 50)), 3),
            "p99_ms": round(float(np.percentile(values, 99)), 3)}


def fill(session_factory, store: LocalArtifactStore, reg, start: int, stop: int) -> list[str]:
    """Adapt sinusoid tasks in vmapped batches and store them as adapted models."""
    ids, now = [], datetime.now(UTC)
    for lo in range(start, stop, 1000):
        n = min(1000, stop - lo)
        xs = torch.rand(n, 5, 1) * 10 - 5
        states = reg.learner.adapt_batch(xs, torch.sin(xs) * torch.rand(n, 1, 1) * 5)
        rows = []
        for i in range(n):
            data = encode_state({k: v[i] for k, v in states.items()})
            sha = store.put(data)
            ident = uuid.uuid4().hex
            ids.append(ident)
            rows.append({"id": ident, "tenant": "default", "meta_learner": "sinusoid-hypernet",
                         "meta_learner_version": reg.version,
                         "meta_learner_weights_sha256": reg.weights_sha256,
                         "task_type": "regression", "labels": None,
                         "artifact_sha256": sha, "artifact_bytes": len(data),
                         "adaptation": {"steps": 0, "duration_ms": 0.0, "support_loss_before": None,
                                        "support_loss_after": 0.0},
                         "created_at": now + timedelta(microseconds=lo + i),
                         "expires_at": now + timedelta(days=7)})
        with session_factory() as session:
            claim_model_row(session, "default", len(rows))  # the quota's row counter, as the service keeps it
            session.execute(insert(AdaptedModelRow), rows)
            session.commit()
    return ids


def time_reads(client: TestClient, ids: list[str], n: int = 300) -> dict:
    rng = random.Random(0)
    get, listing = [], []
    for ident in rng.sample(ids, min(n, len(ids))):
        t0 = time.perf_counter()
        assert client.get(f"/v1/adapted-models/{ident}").status_code == 200
        get.append((time.perf_counter() - t0) * 1000)
    for _ in range(100):
        t0 = time.perf_counter()
        assert client.get("/v1/adapted-models", params={"limit": 50}).status_code == 200
        listing.append((time.perf_counter() - t0) * 1000)
    create = []  # an adaptation's quota step must not grow with the tenant's models
    for i in range(60):
        support = {"inputs": [[x / 2] for x in range(-4, 5)], "targets": [0.05 * i + x / 10 for x in range(-4, 5)]}
        t0 = time.perf_counter()
        assert client.post("/v1/adapted-models", json={"meta_learner": "sinusoid-hypernet",
                                                       "support": support}).status_code == 201
        create.append((time.perf_counter() - t0) * 1000)
    return {"get": percentiles(get), "list_50": percentiles(listing), "create": percentiles(create)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", type=int, default=100_000)
    ap.add_argument("--database-url", default=None)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="metaserve-scale-"))
    url = args.database_url or f"sqlite:///{root / 'scale.db'}"
    upgrade(url)
    settings = Settings(data_dir=root, database_url=url, models_dir=REPO / "models", auth_enabled=False,
                        rate_limit_per_minute=0, warm_up=False, cache_bytes=0, log_level="warning",
                        max_models_per_tenant=args.models + 10_000)  # room for the timed adaptations
    report: dict = {"bytes_per_adapted_model": state_sizes(), "models": args.models}
    print("bytes per adapted model:", report["bytes_per_adapted_model"], flush=True)
    with TestClient(create_app(settings)) as client:
        engine = client.app.state.engine
        reg = engine.registry.learners["sinusoid-hypernet"]
        store = LocalArtifactStore(settings.artifacts_dir)  # the files the engine reads
        factory = client.app.state.session_factory
        t0 = time.perf_counter()
        ids = fill(factory, store, reg, 0, 1000)
        report["at_1k"] = time_reads(client, ids)
        print("1k:", report["at_1k"], flush=True)
        ids += fill(factory, store, reg, 1000, args.models)
        report["fill_seconds"] = round(time.perf_counter() - t0, 1)
        report[f"at_{args.models}"] = time_reads(client, ids)
        print(f"{args.models}:", report[f"at_{args.models}"], flush=True)
        cold = []
        with factory() as session:
            for ident in random.Random(1).sample(ids, 300):
                sha = session.get(AdaptedModelRow, ident).artifact_sha256
                t0 = time.perf_counter()
                engine.states.load(sha)  # cache_bytes=0: always a cold load from the store
                cold.append((time.perf_counter() - t0) * 1000)
        report["cold_load"] = percentiles(cold)
        print("cold load:", report["cold_load"], flush=True)
    shutil.rmtree(root, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scale.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
