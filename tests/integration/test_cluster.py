"""The scale-out topology on loopback (deploy/local_cluster.py): PostgreSQL, SeaweedFS, two API
replicas, two job workers and nginx. Failure tests: a worker SIGKILLed mid-job, an API replica
SIGKILLed under load, one Idempotency-Key sent to two replicas at once."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from app.core.ports import free_port, free_port_run
from deploy.local_cluster import Cluster, nginx_binary
from tests.api.helpers import sine_support
from tests.api.test_text import SUPPORT as TEXT_SUPPORT
from tests.conftest import REPO

pytestmark = pytest.mark.slow
SINE = {"meta_learner": "sinusoid-maml", "support": sine_support()}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from tests.conftest import POSTGRES_URL, postgres_schema_url

    if not POSTGRES_URL:
        pytest.skip("METASERVE_TEST_POSTGRES_URL not set (make test sets it)")
    try:
        nginx_binary()
    except FileNotFoundError:
        pytest.skip("nginx is not installed (make install-dev installs nginx-light with apt)")
    schema = postgres_schema_url(POSTGRES_URL)
    database_url = next(schema)
    api_port = free_port_run(2)
    made = Cluster(root=tmp_path_factory.mktemp("cluster"), port=free_port(), api_port=api_port,
                   replicas=2, workers=2, database_url=database_url,
                   env={**os.environ, "METASERVE_AUTH_ENABLED": "false",
                        "METASERVE_WARM_UP": "false", "METASERVE_JOB_LEASE_SECONDS": "2",
                        "METASERVE_JOB_POLL_SECONDS": "0.2", "METASERVE_LOG_LEVEL": "warning",
                        "METASERVE_RATE_LIMIT_PER_MINUTE": "0", "METASERVE_MAX_REQUESTS_PER_CLIENT": "0"})
    try:
        made.up()
        made.db = create_engine(database_url)
        yield made
    finally:
        made.down()
        if hasattr(made, "db"):
            made.db.dispose()
        next(schema, None)


def test_adapt_through_the_balancer_predict_on_every_replica(cluster):
    made = httpx.post(f"{cluster.url}/v1/adapted-models", json=SINE, timeout=60)
    assert made.status_code == 201, made.text
    ident = made.json()["id"]
    answers = [httpx.post(f"{url}/v1/adapted-models/{ident}/predictions", timeout=30,
                          json={"inputs": [[-1.0], [0.5]]}).json() for url in cluster.replica_urls()]
    assert answers[0] == answers[1] and len(answers[0]["predictions"]) == 2


def job_holder(cluster: Cluster, ident: str) -> str | None:
    with cluster.db.connect() as conn:
        worker = conn.scalar(text("SELECT worker FROM adaptation_jobs WHERE adapted_model_id = :i"),
                             {"i": ident})
    if not worker:
        return None
    pid = int(worker.split(":")[1])
    names = {p: n for n, p in json.loads(cluster.pids_file.read_text()).items()}
    return names.get(pid)


def test_worker_killed_mid_job_the_job_completes_once(cluster):
    made = httpx.post(f"{cluster.url}/v1/adapted-models", timeout=60, json={
        "meta_learner": "text-protonet-finetune", "support": TEXT_SUPPORT, "options": {"steps": 400}})
    assert made.status_code == 202, made.text
    ident = made.json()["id"]
    deadline = time.monotonic() + 60
    while (holder := job_holder(cluster, ident)) is None:
        assert time.monotonic() < deadline, "no worker took the job"
        time.sleep(0.05)
    assert holder.startswith("worker-")
    cluster.kill(holder, signal.SIGKILL)
    try:
        deadline = time.monotonic() + 90
        while (body := httpx.get(f"{cluster.url}/v1/adapted-models/{ident}", timeout=10).json())[
                "status"] not in ("ready", "failed"):
            assert time.monotonic() < deadline, f"still {body['status']}"
            time.sleep(0.1)
        assert body["status"] == "ready", body
        with cluster.db.connect() as conn:
            assert conn.scalar(text("SELECT count(*) FROM adapted_models WHERE id = :i"), {"i": ident}) == 1
            assert conn.scalar(text("SELECT count(*) FROM adaptation_jobs")) == 0
        r = httpx.post(f"{cluster.url}/v1/adapted-models/{ident}/predictions", timeout=30,
                       json={"inputs": ["the package is late"]})
        assert r.json()["predictions"][0]["label"] == "shipping"
    finally:
        cluster.start_worker(int(holder.split("-")[1]))


def test_api_replica_killed_under_load_no_5xx_no_lost_ids(cluster):
    stop = threading.Event()
    failures: list[str] = []
    acknowledged: list[str] = []
    lock = threading.Lock()

    def client_loop(seed: int) -> None:
        with httpx.Client(base_url=cluster.url, timeout=60) as client:
            k = 0
            while not stop.is_set():
                k += 1
                body = {**SINE, "options": {"ttl_seconds": 3600 + seed * 10_000 + k}}
                r = client.post("/v1/adapted-models", json=body,
                                headers={"Idempotency-Key": f"load-{seed}-{k}-{uuid.uuid4().hex[:6]}"})
                if r.status_code != 201:
                    with lock:
                        failures.append(f"create {r.status_code}")
                    continue
                ident = r.json()["id"]
                with lock:
                    acknowledged.append(ident)
                p = client.post(f"/v1/adapted-models/{ident}/predictions", json={"inputs": [[0.0]]})
                if p.status_code != 200:
                    with lock:
                        failures.append(f"predict {p.status_code}")

    with ThreadPoolExecutor(8) as pool:
        for seed in range(8):
            pool.submit(client_loop, seed)
        time.sleep(3)
        cluster.kill("api-0", signal.SIGKILL)
        time.sleep(4)
        cluster.start_replica(0)
        time.sleep(5)
        stop.set()
    cluster.wait_replicas_ready()
    assert acknowledged, "no request succeeded"
    assert failures == []
    with httpx.Client(base_url=cluster.url, timeout=30) as client:
        lost = [i for i in acknowledged
                if client.get(f"/v1/adapted-models/{i}").status_code != 200]
    assert lost == []


def test_one_idempotency_key_on_two_replicas_makes_one_model(cluster):
    cluster.wait_replicas_ready()
    key = {"Idempotency-Key": f"twice-{uuid.uuid4().hex}"}
    body = {**SINE, "options": {"ttl_seconds": 4242}}
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda url: httpx.post(f"{url}/v1/adapted-models", json=body,
                                                       headers=key, timeout=60),
                                cluster.replica_urls()))
    assert {a.status_code for a in answers} <= {200, 201}
    assert answers[0].json()["id"] == answers[1].json()["id"]
    with cluster.db.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM adapted_models WHERE expires_at - created_at "
                                "= interval '4242 seconds'")) == 1


def catalog_cli(cluster: Cluster, *args: str) -> tuple[int, dict]:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "app.cli", "meta-learners", *args], cwd=REPO,
                          env=cluster.env_for_services(), capture_output=True, text=True, timeout=120)
    text_out = (done.stdout if done.returncode == 0 else done.stderr).strip().splitlines()
    return done.returncode, json.loads(text_out[-1])


def copy_version(name: str, target: Path, version: str, tamper: bool = False) -> Path:
    """The newest shipped version of ``name`` as ``version`` (``tamper``: its weights changed
    after the manifest's checksum was taken)."""
    import shutil

    from safetensors.torch import load_file, save_file

    source = sorted((REPO / "models" / name).iterdir())[-1]
    folder = target / name / version
    shutil.copytree(source, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["version"] = version
    (folder / "manifest.json").write_text(json.dumps(manifest))
    if tamper:
        tensors = load_file(str(folder / "weights.safetensors"))
        key = sorted(tensors)[0]
        save_file({**tensors, key: tensors[key] * 2}, str(folder / "weights.safetensors"))
    return folder


def on_every_replica(cluster: Cluster, check, within: float = 10.0) -> float:
    """Seconds until ``check(response-producing url)`` holds on every replica (asserted < within)."""
    start = time.monotonic()
    pending = set(cluster.replica_urls())
    while pending:
        pending = {url for url in pending if not check(url)}
        assert time.monotonic() - start < within, f"not converged on {sorted(pending)}"
        time.sleep(0.05)
    return time.monotonic() - start


def test_catalog_changes_reach_every_replica_and_worker_without_restart(cluster, tmp_path):
    name = "text-protonet-finetune"
    code, out = catalog_cli(cluster, "publish", str(copy_version(name, tmp_path, "9.0.0")), "--alias", "canary")
    assert code == 0 and out["outcome"] == "published", out
    seconds = on_every_replica(cluster, lambda url: httpx.get(
        f"{url}/v1/meta-learners/{name}@canary", timeout=5).json().get("version") == "9.0.0")
    print(f"published version served by both replicas after {seconds:.2f} s")

    # a job on the published version: the worker that runs it follows the catalog too
    made = httpx.post(f"{cluster.url}/v1/adapted-models", timeout=60,
                      json={"meta_learner": f"{name}@canary", "support": TEXT_SUPPORT, "options": {"steps": 5}})
    assert made.status_code == 202 and made.json()["meta_learner_version"] == "9.0.0", made.text
    ident = made.json()["id"]
    deadline = time.monotonic() + 60
    while (body := httpx.get(f"{cluster.url}/v1/adapted-models/{ident}", timeout=10).json())["status"] != "ready":
        assert body["status"] != "failed" and time.monotonic() < deadline, body
        time.sleep(0.1)

    code, out = catalog_cli(cluster, "publish", str(copy_version(name, tmp_path / "bad", "9.1.0", tamper=True)))
    assert code == 2 and out["refused"] == "weights-checksum"

    assert catalog_cli(cluster, "alias", name, "canary", "1.1.0")[0] == 0
    code, out = catalog_cli(cluster, "retire", f"{name}@9.0.0")
    assert code == 0, out
    predict = {"inputs": ["the package is late"]}
    on_every_replica(cluster, lambda url: httpx.post(
        f"{url}/v1/adapted-models/{ident}/predictions", json=predict, timeout=10).status_code == 410)
    code, out = catalog_cli(cluster, "purge", f"{name}@9.0.0")
    assert code == 2 and "still reference" in out["refused"]
