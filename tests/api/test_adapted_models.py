"""The adaptation and prediction contract, on SQLite and PostgreSQL."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.api.helpers import glyph, image_support, png_b64, sine_support

PROBLEM = "application/problem+json"


def adapt(client, meta_learner="sinusoid-maml", support=None, **options):
    body = {"meta_learner": meta_learner, "support": support or sine_support()}
    if options:
        body["options"] = options
    return client.post("/v1/adapted-models", json=body)


def test_list_and_describe_meta_learners(client):
    r = client.get("/v1/meta-learners")
    assert r.status_code == 200
    names = {m["name"] for m in r.json()["items"]}
    assert {"sinusoid-maml", "omniglot-protonet", "sinusoid-hypernet"} <= names
    one = client.get("/v1/meta-learners/omniglot-protonet").json()
    assert one["input"]["kind"] == "image" and one["input"]["shape"] == [1, 28, 28]
    assert one["task_type"] == "classification" and one["limits"]["max_ways"] >= 20
    assert one["metrics"]


@pytest.mark.parametrize("name", ["sinusoid-maml", "sinusoid-metasgd", "sinusoid-hypernet"])
def test_regression_adapt_then_predict(client, name):
    r = adapt(client, name)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "ready" and body["task_type"] == "regression"
    assert r.headers["location"] == f"/v1/adapted-models/{body['id']}"
    rep = body["adaptation"]
    assert rep["support_loss_after"] >= 0 and rep["duration_ms"] > 0
    queries = [[-3.0], [0.5], [2.5]]
    p = client.post(f"/v1/adapted-models/{body['id']}/predictions", json={"inputs": queries})
    assert p.status_code == 200
    preds = p.json()["predictions"]
    truth = [2.0 * math.sin(q[0] - 0.5) for q in queries]
    assert len(preds) == 3
    assert np.mean((np.array(preds) - np.array(truth)) ** 2) < 1.0  # it really adapted
    g = client.get(f"/v1/adapted-models/{body['id']}/predictions",
                   params={"inputs": "[[-3.0], 0.5, [2.5]]"})
    assert g.status_code == 200 and g.json()["predictions"] == pytest.approx(preds, abs=1e-6)


def test_maml_reports_loss_before_and_after(client):
    rep = adapt(client, steps=10).json()["adaptation"]
    assert rep["steps"] == 10
    assert rep["support_loss_after"] < rep["support_loss_before"]


@pytest.mark.parametrize("name", ["omniglot-protonet", "omniglot-maml", "omniglot-anil"])
def test_image_classification_with_pngs_and_string_labels(client, name):
    r = adapt(client, name, image_support(("cat", "dog", "emu", "fox")[:3]))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["labels"] == ["cat", "dog", "emu"]
    queries = [png_b64(glyph(k, jitter=3)) for k in range(3)]
    preds = client.post(f"/v1/adapted-models/{body['id']}/predictions",
                        json={"inputs": queries}).json()["predictions"]
    assert [p["label"] for p in preds] == ["cat", "dog", "emu"]
    for p in preds:
        assert set(p["probabilities"]) == {"cat", "dog", "emu"}
        assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_integer_labels_come_back_as_integers_and_nested_lists_work(client):
    imgs = [(255 - glyph(k)) / 255.0 for k in range(2)]  # stroke = 1 already
    from PIL import Image

    small = [np.asarray(Image.fromarray((i * 255).astype(np.uint8)).resize((28, 28),
             Image.Resampling.BOX), dtype=np.float64) / 255.0 for i in imgs]
    support = {"inputs": [s.tolist() for s in small], "targets": [7, 3]}
    r = adapt(client, "omniglot-protonet", support)
    assert r.status_code == 201, r.text
    assert r.json()["labels"] == [7, 3]
    p = client.post(f"/v1/adapted-models/{r.json()['id']}/predictions",
                    json={"inputs": [[small[1].tolist()]]}).json()["predictions"][0]
    assert p["label"] == 3 and set(p["probabilities"]) == {"7", "3"}


def test_get_list_delete(client):
    ids = [adapt(client).json()["id"] for _ in range(3)]
    other = adapt(client, "sinusoid-hypernet").json()["id"]
    got = client.get(f"/v1/adapted-models/{ids[0]}")
    assert got.status_code == 200 and got.json()["id"] == ids[0]
    page = client.get("/v1/adapted-models", params={"limit": 2}).json()
    assert [m["id"] for m in page["items"]] == [other, ids[2]]
    rest = client.get("/v1/adapted-models", params={"limit": 10, "cursor": page["next_cursor"]})
    assert [m["id"] for m in rest.json()["items"]] == [ids[1], ids[0]]
    assert rest.json()["next_cursor"] is None
    only = client.get("/v1/adapted-models", params={"meta_learner": "sinusoid-hypernet"}).json()
    assert [m["id"] for m in only["items"]] == [other]
    assert client.delete(f"/v1/adapted-models/{ids[0]}").status_code == 204
    for r in (client.get(f"/v1/adapted-models/{ids[0]}"),
              client.delete(f"/v1/adapted-models/{ids[0]}"),
              client.post(f"/v1/adapted-models/{ids[0]}/predictions", json={"inputs": [[1.0]]})):
        assert r.status_code == 404 and r.headers["content-type"] == PROBLEM


@pytest.mark.parametrize("inline_bytes", [0, 16_384], ids=["file", "inline"])
def test_identical_states_share_one_artifact_until_the_last_delete(settings, inline_bytes):
    from fastapi.testclient import TestClient

    from app.main import create_app

    settings = settings.model_copy(update={"orphan_grace_seconds": 0, "inline_state_bytes": inline_bytes})
    with TestClient(create_app(settings)) as client:
        shared_artifact_lifecycle(client, settings)


def test_a_young_unreferenced_artifact_waits_for_the_sweep(settings):
    """A concurrent request may be about to commit a row for the same content."""
    import time

    from fastapi.testclient import TestClient

    from app.main import create_app

    settings = settings.model_copy(update={"orphan_grace_seconds": 3.0, "sweep_interval_seconds": 0.2,
                                           "inline_state_bytes": 0})  # the file store's lifecycle
    with TestClient(create_app(settings)) as client:
        ident = adapt(client, "sinusoid-hypernet").json()["id"]
        assert client.delete(f"/v1/adapted-models/{ident}").status_code == 204
        files = list(settings.artifacts_dir.glob("*/*.safetensors"))
        assert len(files) == 1  # kept: younger than the grace period
        deadline = time.monotonic() + 20
        while files[0].exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not files[0].exists()  # collected by the sweep once older


def shared_artifact_lifecycle(client, settings):
    a = adapt(client, "sinusoid-hypernet").json()["id"]
    b = adapt(client, "sinusoid-hypernet").json()["id"]
    states = client.app.state.engine.states
    stored = list(states.stored_states())
    assert len(stored) == 1
    files = list(settings.artifacts_dir.glob("*/*.safetensors"))
    assert len(files) == (1 if settings.inline_state_bytes == 0 else 0)  # small: inline, else a file
    client.delete(f"/v1/adapted-models/{a}")
    assert states.has_state(stored[0])
    assert client.post(f"/v1/adapted-models/{b}/predictions", json={"inputs": [[0.0]]}).status_code == 200
    client.delete(f"/v1/adapted-models/{b}")
    assert not states.has_state(stored[0]) and not any(f.exists() for f in files)


def test_expired_models_are_not_found(client):
    import time

    r = adapt(client, "sinusoid-hypernet", ttl_seconds=1)
    assert r.status_code == 201
    time.sleep(1.2)
    assert client.get(f"/v1/adapted-models/{r.json()['id']}").status_code == 404


def test_request_id_is_echoed_and_metrics_exported(client):
    r = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    assert client.get("/healthz").headers["x-request-id"]
    made = adapt(client)
    predicted = client.post(f"/v1/adapted-models/{made.json()['id']}/predictions",
                            json={"inputs": [[0.5]]})
    assert predicted.status_code == 200, predicted.text
    text = client.get("/metrics").text
    assert 'metaserve_adaptation_seconds_count{meta_learner="sinusoid-maml"} 1.0' in text
    assert 'metaserve_prediction_seconds_count{meta_learner="sinusoid-maml"} 1.0' in text
    assert "metaserve_http_requests_total" in text and "metaserve_state_cache_bytes" in text


def test_readyz_reports_database_and_registry(client):
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"]["database"] == "ok"


def test_registry_is_mirrored_into_the_database(client, settings):
    from sqlalchemy import create_engine, text

    engine = create_engine(settings.resolved_database_url)
    with engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT name, algorithm FROM meta_learners")).all())
    engine.dispose()
    assert rows["omniglot-protonet"] == "protonet" and rows["sinusoid-hypernet"] == "hypernet"


def test_warm_up_adapts_every_version_once_outside_the_request_metrics(settings):
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(settings.model_copy(update={"warm_up": True}))) as c:
        engine = c.app.state.engine
        regs = engine.registry.all()
        assert engine.warmed_up == [reg.ref for reg in regs if reg.learner.warm_at_start]
        # the learners whose first task loads a large encoder are left cold (jobs of a minute)
        cold = {reg.spec.algorithm for reg in regs if not reg.learner.warm_at_start}
        assert cold == {"protonet-encoder-finetune"}
        text = c.get("/metrics").text
        assert "metaserve_adaptation_seconds_count{" not in text
        assert "metaserve_prediction_seconds_count{" not in text
