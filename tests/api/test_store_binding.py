"""A server started with the wrong data directory never erases other servers' adapted models."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.db.models import AdaptedModelRow
from app.main import create_app
from tests.api.helpers import sine_support

PROBLEM = "application/problem+json"


def count_rows(client) -> int:
    with client.app.state.session_factory() as session:
        return session.scalar(select(func.count()).select_from(AdaptedModelRow))


def test_a_server_on_another_data_directory_refuses_to_serve_and_deletes_nothing(settings, tmp_path):
    right = settings.model_copy(update={"data_dir": tmp_path / "right", "orphan_grace_seconds": 0,
                                        "sweep_interval_seconds": 0, "inline_state_bytes": 0})
    # the wrong server would sweep and collect at once if it were allowed to
    wrong = right.model_copy(update={"data_dir": tmp_path / "typo", "sweep_interval_seconds": 0.1})
    ids = []
    with TestClient(create_app(right)) as c:
        for amplitude in (1.0, 2.0, 3.0):
            r = c.post("/v1/adapted-models", json={"meta_learner": "sinusoid-maml",
                                                   "support": sine_support(amplitude)})
            ids.append(r.json()["id"])
        files = sorted(right.artifacts_dir.glob("*/*.safetensors"))
        assert count_rows(c) == 3 and len(files) == 3

    with TestClient(create_app(wrong)) as c:  # same database, an empty data directory
        ready = c.get("/readyz")
        assert ready.status_code == 503 and "store" in ready.json()["checks"]["artifact_store"]
        r = c.get(f"/v1/adapted-models/{ids[0]}")
        assert r.status_code == 503 and r.headers["content-type"] == PROBLEM
        assert r.json()["type"].endswith("store-mismatch") and "METASERVE_DATA_DIR" in r.json()["detail"]
        assert c.post("/v1/adapted-models", json={"meta_learner": "sinusoid-maml",
                                                  "support": sine_support()}).status_code == 503
        assert c.get("/healthz").status_code == 200  # alive, just not ready
        import time

        time.sleep(0.5)  # several sweep periods
        assert count_rows(c) == 3

    with TestClient(create_app(right)) as c:  # the right server still serves everything
        assert c.get("/readyz").status_code == 200
        for ident in ids:
            r = c.post(f"/v1/adapted-models/{ident}/predictions", json={"inputs": [[0.5]]})
            assert r.status_code == 200
        assert sorted(right.artifacts_dir.glob("*/*.safetensors")) == files


def test_the_store_identity_is_created_once(tmp_path):
    from app.storage.artifacts import LocalArtifactStore

    a, b = LocalArtifactStore(tmp_path), LocalArtifactStore(tmp_path)
    assert a.identity() == b.identity() == (tmp_path / "STORE_ID").read_text()
    assert LocalArtifactStore(tmp_path / "other").identity() != a.identity()
