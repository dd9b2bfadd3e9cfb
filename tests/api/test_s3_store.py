"""The service with its adapted states on S3 (SeaweedFS): the same contract as the local
store, states that survive a restart of the object store, orphans collected the same way."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.lifecycle import collect_orphans
from app.main import create_app
from tests.api.helpers import image_support, sine_support

QUERIES = {"inputs": [[-1.0], [0.5], [2.0]]}


def test_adapt_predict_delete_on_s3(settings, s3_store_settings, seaweedfs):
    s3 = settings.model_copy(update={**s3_store_settings, "orphan_grace_seconds": 0.0})
    with TestClient(create_app(s3)) as client:
        made = client.post("/v1/adapted-models", json={"meta_learner": "sinusoid-maml",
                                                       "support": sine_support()})
        assert made.status_code == 201
        ident = made.json()["id"]
        first = client.post(f"/v1/adapted-models/{ident}/predictions", json=QUERIES).json()
        image = client.post("/v1/adapted-models", json={"meta_learner": "omniglot-protonet",
                                                        "support": image_support()})
        assert image.status_code == 201
        store = client.app.state.engine.states._store
        assert len(list(store.keys())) == 2
    seaweedfs.stop()  # the object store restarts; every acknowledged ID still predicts the same
    seaweedfs.start()
    with TestClient(create_app(s3)) as client:  # a new process: nothing cached
        again = client.post(f"/v1/adapted-models/{ident}/predictions", json=QUERIES)
        assert again.status_code == 200 and again.json() == first
        assert client.delete(f"/v1/adapted-models/{ident}").status_code == 204
        store = client.app.state.engine.states._store
        assert len(list(store.keys())) == 1
        orphan = store.put(b"a state whose row was never committed")
        with client.app.state.session_factory() as session:
            assert collect_orphans(session=session, states=client.app.state.engine.states)["orphan_states"] == 1
        assert not store.exists(orphan) and len(list(store.keys())) == 1


def test_s3_and_local_stores_are_different_stores(settings, s3_store_settings):
    with TestClient(create_app(settings)) as client:  # binds the database to the local store
        assert client.get("/readyz").status_code == 200
    with TestClient(create_app(settings.model_copy(update=s3_store_settings))) as client:
        r = client.get("/v1/meta-learners")
        assert r.status_code == 503 and "store" in r.json()["detail"]


def test_an_unreachable_store_is_503_not_500(settings, s3_store_settings, seaweedfs):
    # every state in S3 (small ones would otherwise live in the database)
    s3 = settings.model_copy(update={**s3_store_settings, "inline_state_bytes": 0})
    with TestClient(create_app(s3)) as client:
        ident = client.post("/v1/adapted-models", json={"meta_learner": "sinusoid-maml",
                                                        "support": sine_support()}).json()["id"]
        with client.app.state.session_factory() as session:
            from app.db.models import AdaptedModelRow
            sha = session.get(AdaptedModelRow, ident).artifact_sha256
        client.app.state.engine.states._cache.discard(sha)  # a cold state: it must be read from the store
        seaweedfs.stop()
        try:
            r = client.post(f"/v1/adapted-models/{ident}/predictions", json=QUERIES)
            assert r.status_code == 503 and r.headers["Retry-After"] == "2"
            assert r.json()["type"].endswith("artifact-store-unavailable")
            made = client.post("/v1/adapted-models", json={"meta_learner": "sinusoid-maml",
                                                           "support": sine_support(1.0)})
            assert made.status_code == 503  # nothing half-made: no row without its state
        finally:
            seaweedfs.start()
        assert client.post(f"/v1/adapted-models/{ident}/predictions", json=QUERIES).status_code == 200
        assert len(client.get("/v1/adapted-models").json()["items"]) == 1


def test_small_states_inline_in_the_database(settings):
    inline = settings.model_copy(update={"inline_state_bytes": 16_384, "orphan_grace_seconds": 0.0})
    with TestClient(create_app(inline)) as client:
        small = client.post("/v1/adapted-models", json={"meta_learner": "sinusoid-maml",
                                                        "support": sine_support()}).json()["id"]
        answer = client.post(f"/v1/adapted-models/{small}/predictions", json=QUERIES).json()
        store = client.app.state.engine.states._store
        assert len(list(store.inline.keys())) == 1 and list(store.large.keys()) == []
    with TestClient(create_app(inline)) as client:  # cold: read back from the database
        assert client.post(f"/v1/adapted-models/{small}/predictions", json=QUERIES).json() == answer
        assert client.delete(f"/v1/adapted-models/{small}").status_code == 204
        assert list(client.app.state.engine.states._store.keys()) == []
