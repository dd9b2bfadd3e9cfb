"""Cold state loads: the local store against S3 (a private SeaweedFS on loopback) and small
states inline in the database (SQLite, and PostgreSQL when METASERVE_TEST_POSTGRES_URL is set), for the
state sizes the shipped meta-learners produce; p50/p99 of ``get`` (read + sha256 check) and
of ``put``. Writes ``benchmarks/results/store_latency.json``.

    python -m benchmarks.store_latency [--n 200]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from app.storage.artifacts import LocalArtifactStore
from app.storage.s3 import S3ArtifactStore
from app.storage.seaweedfs import SeaweedFS

RESULTS = Path(__file__).resolve().parent / "results"
# bytes of a typical state: sinusoid-maml weights, omniglot-protonet 20-way prototypes,
# text-protonet 10-way prototypes, text-protonet-finetune (adapter + prototypes)
SIZES = {"sinusoid-maml": 6_000, "omniglot-protonet-20way": 5_200, "text-protonet-10way": 15_500,
         "text-protonet-finetune": 1_590_000}


def timed(fn, n: int) -> dict[str, float]:
    ms = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        ms.append((time.perf_counter() - t0) * 1000)
    a = np.array(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3)}


def database_store(url: str):
    """The inline store on ``url`` (migrated); PostgreSQL's table is emptied first."""
    from sqlalchemy import text  # noqa: PLC0415

    from app.db.migrate import upgrade  # noqa: PLC0415
    from app.db.session import make_engine, make_session_factory  # noqa: PLC0415
    from app.storage.tiered import DatabaseArtifactStore  # noqa: PLC0415

    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM inline_states"))
    return DatabaseArtifactStore(make_session_factory(engine))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "metaserve-bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "metaserve-bench-secret")
    report: dict = {"n": args.n, "sizes": SIZES}
    with tempfile.TemporaryDirectory() as tmp, SeaweedFS(Path(tmp) / "weed") as endpoint:
        stores = {"local": LocalArtifactStore(Path(tmp) / "local"),
                  "s3": S3ArtifactStore(bucket="bench", endpoint_url=endpoint),
                  "database-sqlite": database_store(f"sqlite:///{tmp}/inline.db")}
        if os.environ.get("METASERVE_TEST_POSTGRES_URL"):  # a database of its own on that server
            from sqlalchemy.engine import make_url  # noqa: PLC0415

            from deploy.local_cluster import ensure_database  # noqa: PLC0415

            url = make_url(os.environ["METASERVE_TEST_POSTGRES_URL"]).set(database="metaserve_bench")
            url = url.render_as_string(hide_password=False)
            ensure_database(url)
            stores["database-postgresql"] = database_store(url)
        rng = np.random.default_rng(0)
        for label, size in SIZES.items():
            n = args.n if size < 100_000 else max(args.n // 10, 10)
            if size >= 100_000:  # inline only for small states
                stores_now = {k: v for k, v in stores.items() if not k.startswith("database")}
            else:
                stores_now = stores
            blobs = [rng.bytes(size) for _ in range(n)]
            for kind, store in stores_now.items():
                shas: list[str] = []
                put = timed(lambda i, s=store, sh=shas: sh.append(s.put(blobs[i])), n)  # noqa: B023
                get = timed(lambda i, s=store, sh=shas: s.get(sh[i]), n)
                report.setdefault(label, {})[kind] = {"put": put, "get": get}
            local, s3 = report[label]["local"]["get"]["p50_ms"], report[label]["s3"]["get"]["p50_ms"]
            report[label]["s3_minus_local_get_p50_ms"] = round(s3 - local, 3)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "store_latency.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
