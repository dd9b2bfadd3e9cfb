"""Small adapted states are written by the transaction that commits their row: one commit per
adaptation, and a refused or failed create leaves no state behind."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.db.models import InlineStateRow
from app.main import create_app
from tests.api.helpers import sine_support

QUERIES = {"inputs": [[-1.0], [0.5], [2.0]]}


def inline_rows(client) -> int:
    with client.app.state.session_factory() as session:
        return session.query(InlineStateRow).count()


def test_a_small_state_is_stored_by_the_rows_own_commit(settings):
    inline = settings.model_copy(update={"inline_state_bytes": 16_384, "max_models_per_tenant": 2})
    with TestClient(create_app(inline)) as client:
        store = client.app.state.engine.states._store

        def separate_write(data: bytes) -> str:
            raise AssertionError("a small state was written apart from its row")

        store.inline.put = store.large.put = separate_write
        first = client.post("/v1/adapted-models", json={"meta_learner": "sinusoid-maml",
                                                        "support": sine_support()})
        assert first.status_code == 201
        again = client.post("/v1/adapted-models", json={"meta_learner": "sinusoid-maml",
                                                        "support": sine_support()})
        assert again.status_code == 201  # the same state: one row, refreshed, no conflict
        assert inline_rows(client) == 1
        over = client.post("/v1/adapted-models", json={"meta_learner": "sinusoid-maml",
                                                       "support": sine_support(1.0, 0.2)})
        assert over.status_code == 409  # over the quota: rolled back with its state
        assert inline_rows(client) == 1
        ident = first.json()["id"]
        answer = client.post(f"/v1/adapted-models/{ident}/predictions", json=QUERIES).json()
    with TestClient(create_app(inline)) as client:  # cold: read back from the database
        assert client.post(f"/v1/adapted-models/{ident}/predictions", json=QUERIES).json() == answer
