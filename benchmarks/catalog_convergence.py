"""How long a published version takes to be served by every replica: two ``metaserve serve``
processes on one database (PostgreSQL when METASERVE_TEST_POSTGRES_URL is set, else a SQLite
file) with the default poll period, 20 publishes with ``metaserve meta-learners publish``; for
each, the seconds from the command's return (its transaction committed) until both replicas
describe the new version.

    python -m benchmarks.catalog_convergence [--publishes 20]

Writes ``benchmarks/results/catalog_convergence.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from tests.conftest import REPO
from tests.live_server import Server

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "sinusoid-maml"


def stage(root: Path, version: str) -> Path:
    source = REPO / "models" / NAME / "1.0.0"
    folder = root / NAME / version
    shutil.copytree(source, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["version"] = version
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--publishes", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="catalog-convergence-"))
    postgres = os.environ.get("METASERVE_TEST_POSTGRES_URL", "")
    if postgres:
        from tests.conftest import postgres_schema_url

        schema = postgres_schema_url(postgres)
        database_url = next(schema)
    else:
        schema, database_url = None, f"sqlite:///{work / 'metaserve.db'}"
    models = work / "models"
    shutil.copytree(REPO / "models" / NAME / "1.0.0", models / NAME / "1.0.0")
    env = {"METASERVE_MODELS_DIR": str(models), "METASERVE_AUTH_ENABLED": "false",
           "METASERVE_LOG_LEVEL": "warning"}
    replicas = [Server(database_url, work / "data", **env) for _ in range(2)]
    try:
        replicas[0].cli("db", "upgrade")
        for server in replicas:
            server.start()
        seconds = []
        for i in range(args.publishes):
            version = f"2.{i}.0"
            folder = stage(work / "staging", version)
            subprocess.run([sys.executable, "-m", "app.cli", "meta-learners", "publish", str(folder)], cwd=REPO,
                           env=replicas[0].env, check=True, capture_output=True)
            start = time.monotonic()
            pending = {s.url for s in replicas}
            while pending:
                pending = {u for u in pending
                           if httpx.get(f"{u}/v1/meta-learners/{NAME}@{version}", timeout=5).status_code != 200}
                time.sleep(0.02)
            seconds.append(time.monotonic() - start)
            print(f"{version}: {seconds[-1]:.2f} s", flush=True)
    finally:
        for server in replicas:
            server.stop()
        if schema is not None:
            next(schema, None)
        shutil.rmtree(work, ignore_errors=True)
    import torch

    result = {
        "date": datetime.now(UTC).date().isoformat(),
        "hardware": f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, torch "
                    f"{torch.__version__}",
        "database": "postgresql" if postgres else "sqlite",
        "poll_seconds": 2.0, "replicas": 2, "publishes": len(seconds),
        "seconds": {"p50": round(statistics.median(seconds), 3), "max": round(max(seconds), 3),
                    "min": round(min(seconds), 3), "all": [round(s, 3) for s in seconds]},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "catalog_convergence.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["seconds"]))


if __name__ == "__main__":
    main()
