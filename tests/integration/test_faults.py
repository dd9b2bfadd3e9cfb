"""SIGKILL in the middle of adaptations, and two server processes sharing one database."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest
from sqlalchemy import create_engine, text

from app.db.migrate import upgrade
from tests.api.helpers import sine_support
from tests.integration.test_uvicorn_restart import new_key
from tests.live_server import Server


@pytest.mark.parametrize("inline_bytes", ["0", "16384"], ids=["files", "inline"])
def test_sigkill_mid_flight_loses_nothing_acknowledged(postgres_url, tmp_path, inline_bytes):
    """States as files (two fsyncs, then the row) or inline (written by the row's commit)."""
    upgrade(postgres_url)
    data = tmp_path / "var"
    server = Server(postgres_url, data, METASERVE_ORPHAN_GRACE_SECONDS="0",
                    METASERVE_INLINE_STATE_BYTES=inline_bytes)
    server.start()
    key = new_key(server, "acme")
    headers = {"Authorization": f"Bearer {key}"}
    acknowledged: dict[str, list] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def client(seed: int) -> None:
        c = httpx.Client(base_url=server.url, timeout=30, headers=headers)
        i = 0
        while not stop.is_set():
            i += 1
            try:
                r = c.post("/v1/adapted-models", json={
                    "meta_learner": "sinusoid-maml",
                    "support": sine_support(1 + (seed * 100 + i) % 40 / 10, 0.3)})
                if r.status_code == 201:
                    p = c.post(f"/v1/adapted-models/{r.json()['id']}/predictions",
                               json={"inputs": [[-1.0], [2.0]]})
                    with lock:
                        acknowledged[r.json()["id"]] = p.json()["predictions"]
            except httpx.HTTPError:
                return

    threads = [threading.Thread(target=client, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 6 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)  # let more adaptations be in flight
    server.stop(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(acknowledged) >= 4
    server.start()  # reconciliation runs at start-up
    c = httpx.Client(base_url=server.url, timeout=30, headers=headers)
    for ident, predictions in acknowledged.items():
        r = c.post(f"/v1/adapted-models/{ident}/predictions", json={"inputs": [[-1.0], [2.0]]})
        assert r.status_code == 200
        # equal up to float32 rounding: a micro-batched forward may sum in another order
        assert r.json()["predictions"] == pytest.approx(predictions, rel=1e-5, abs=1e-6)
    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        shas = set(conn.execute(text("SELECT DISTINCT artifact_sha256 FROM adapted_models")).scalars())
        inline = set(conn.execute(text("SELECT sha256 FROM inline_states")).scalars())
    engine.dispose()
    files = {p.stem for p in (data / "artifacts").glob("*/*.safetensors")}
    assert files | inline == shas, "an artifact without a row or a row without an artifact remains"
    assert not (inline if inline_bytes == "0" else files), "a state in the other store"
    assert not list((data / "artifacts").glob("*/.*.tmp"))
    server.stop(signal.SIGKILL)


def test_two_processes_serve_each_others_models(postgres_url, tmp_path):
    upgrade(postgres_url)
    a = Server(postgres_url, tmp_path / "var")
    b = Server(postgres_url, tmp_path / "var")
    a.start()
    b.start()
    try:
        key = new_key(a, "acme")
        h = {"Authorization": f"Bearer {key}"}
        made = httpx.post(f"{a.url}/v1/adapted-models", headers=h, timeout=30,
                          json={"meta_learner": "sinusoid-maml", "support": sine_support()}).json()
        query = {"inputs": [[0.5], [1.5]]}
        pa = httpx.post(f"{a.url}/v1/adapted-models/{made['id']}/predictions", json=query, headers=h)
        pb = httpx.post(f"{b.url}/v1/adapted-models/{made['id']}/predictions", json=query, headers=h)
        assert pb.status_code == 200 and pb.json() == pa.json()
        assert httpx.delete(f"{b.url}/v1/adapted-models/{made['id']}", headers=h).status_code == 204
        assert httpx.get(f"{a.url}/v1/adapted-models/{made['id']}", headers=h).status_code == 404
    finally:
        a.stop(signal.SIGKILL)
        b.stop(signal.SIGKILL)
