"""Hostile and careless input: a precise 4xx problem body, never a 500, and nothing stored
that could break a later read (the tenant's list answers after every case)."""

from __future__ import annotations

import base64
import json

import pytest

from tests.api.helpers import sine_support

PROBLEM = "application/problem+json"
SINE = "sinusoid-maml"


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def deep(levels: int) -> str:
    return "[" * levels + "1.0" + "]" * levels


def created(client, support, name=SINE, **options):
    body = {"meta_learner": name, "support": support}
    if options:
        body["options"] = options
    return client.post("/v1/adapted-models", json=body)


def raw_create(client, text: str):
    return client.post("/v1/adapted-models", content=text.encode(),
                       headers={"content-type": "application/json"})


def assert_4xx_problem(r, *codes):
    assert r.status_code in (codes or range(400, 500)), (r.status_code, r.text[:300])
    assert r.headers["content-type"] == PROBLEM, r.headers["content-type"]
    assert r.json()["status"] == r.status_code


@pytest.fixture
def model_id(client):
    return created(client, sine_support()).json()["id"]


CURSORS = [
    cursor("0001-01-01T00:00:00+14:00|abc"),
    cursor("9999-12-31T23:59:59-14:00|abc"),
    cursor("2026-01-01T00:00:00|abc"),  # naive
    cursor("2026-01-01T00:00:00+00:00|"),  # no id
    cursor("2026-01-01T00:00:00+00:00|a\x00b"),
    "%00", "x" * 200,
]


@pytest.mark.parametrize("value", CURSORS)
def test_bad_cursors(client, value):
    assert_4xx_problem(client.get("/v1/adapted-models", params={"cursor": value}), 422)


BIG = "1" + "0" * 400  # 10**400, a JSON integer beyond any float
HUGE = "9" * 5000


def raw_body(inputs: str = "[[1.0]]", targets: str = "[1.0]", name: str = SINE, extra: str = "") -> str:
    return ('{"meta_learner": "' + name + '", "support": {"inputs": ' + inputs + ', "targets": '
            + targets + "}" + extra + "}")


@pytest.mark.parametrize("text", [
    raw_body(inputs=f"[[{BIG}]]"),
    raw_body(targets=f"[{BIG}]"),
    raw_body(inputs=f"[[{HUGE}]]"),
    raw_body(targets=f"[{HUGE}]"),
    raw_body(inputs="[[1.0], [2.0]]", targets=f"[{HUGE}, 1]", name="omniglot-protonet"),
    raw_body(inputs=deep(900)),
    raw_body(inputs=deep(4000)),
    raw_body(extra=', "x": ' + deep(3000)),
])
def test_numbers_and_nesting_beyond_reason_in_the_body(client, text):
    assert_4xx_problem(raw_create(client, text), 400, 422)
    assert client.get("/v1/adapted-models").status_code == 200


@pytest.mark.parametrize("inputs", [f"[[{BIG}]]", f"[{HUGE}]", deep(900), deep(4000)])
def test_numbers_and_nesting_beyond_reason_in_the_query(client, model_id, inputs):
    r = client.get(f"/v1/adapted-models/{model_id}/predictions", params={"inputs": inputs[:8000]})
    assert_4xx_problem(r, 422)


@pytest.mark.parametrize("path", [
    "/v1/adapted-models/abc%00def", "/v1/adapted-models/%00",
    "/v1/adapted-models/0123456789abcdef0123456789abcde%00/predictions?inputs=[[1.0]]",
])
def test_nul_characters_in_ids(client, path):
    assert_4xx_problem(client.get(path), 404)
    assert_4xx_problem(client.delete(path.split("?")[0].removesuffix("/predictions")), 404)


def test_nul_characters_in_filters_and_names(client):
    r = client.get("/v1/adapted-models", params={"meta_learner": "sinusoid\x00maml"})
    assert r.status_code == 200 and r.json()["items"] == []
    assert_4xx_problem(created(client, sine_support(), name="sinusoid\x00maml"), 404)
    assert_4xx_problem(client.get("/v1/meta-learners/sinus%00oid"), 404)


@pytest.mark.parametrize("target", [1e20, -3e38, 1e30])
def test_targets_that_overflow_the_support_loss(client, target):
    support = {"inputs": [[0.0], [1.0]], "targets": [target, 1.0]}
    assert_4xx_problem(created(client, support), 422)
    assert client.get("/v1/adapted-models").status_code == 200


@pytest.mark.parametrize("label", ["\ud800", "ok\udfffok", "tab\tlabel", "nul\x00", "x" * 257])
def test_labels_that_cannot_be_stored_or_shown(client, label):
    support = {"inputs": [[[0.0] * 28] * 28, [[1.0] * 28] * 28], "targets": [label, "other"]}
    body = {"meta_learner": "omniglot-protonet", "support": support}
    assert_4xx_problem(raw_create(client, json.dumps(body)), 422)  # \ud800 escaped as JSON allows
    listed = client.get("/v1/adapted-models")
    assert listed.status_code == 200 and listed.json()["items"] == []


def test_a_deleted_model_answers_404_not_corruption(client, model_id):
    engine = client.app.state.engine
    sha = client.app.state.session_factory().get(
        __import__("app.db.models", fromlist=["AdaptedModelRow"]).AdaptedModelRow, model_id).artifact_sha256
    # the row is read, then the model is deleted (and its file removed) before the state loads
    from app.api.adapted_models import service

    real_predict = engine.predict

    def delete_first(reg, artifact_sha256, labels, inputs, top_k=None, tenant="", abstain_threshold=None):
        assert client.delete(f"/v1/adapted-models/{model_id}").status_code == 204
        engine.states._store.delete(sha)
        engine.states._cache.discard(sha)
        return real_predict(reg, artifact_sha256, labels, inputs, top_k, tenant=tenant)

    engine.predict = delete_first
    try:
        r = client.post(f"/v1/adapted-models/{model_id}/predictions", json={"inputs": [[0.0]]})
    finally:
        engine.predict = real_predict
    assert_4xx_problem(r, 404)
    assert "metaserve_corrupt_artifacts_total 0.0" in client.get("/metrics").text
    assert service  # the service is what turns a vanished row into 404


@pytest.mark.parametrize("options", [{"steps": "10"}, {"ttl_seconds": "60"}, {"steps": True}])
def test_options_are_strictly_typed(client, options):
    assert_4xx_problem(created(client, sine_support(), **options), 422)


@pytest.mark.parametrize("value", [3e38, 1e30, 5.5, -7])
def test_inputs_outside_the_declared_range(client, model_id, value):
    r = created(client, {"inputs": [[value], [0.0]], "targets": [0.0, 1.0]})
    assert_4xx_problem(r, 422)
    assert "[-5.0, 5.0]" in r.json()["detail"]
    p = client.post(f"/v1/adapted-models/{model_id}/predictions", json={"inputs": [[value]]})
    assert_4xx_problem(p, 422)


def expire_all(client):
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from app.db.models import AdaptedModelRow

    with client.app.state.session_factory() as session:
        session.execute(update(AdaptedModelRow).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        session.commit()


def test_expired_models_neither_count_against_the_quota_nor_hold_their_key(settings):
    from fastapi.testclient import TestClient

    from app.main import create_app

    s = settings.model_copy(update={"max_models_per_tenant": 1, "sweep_interval_seconds": 0})
    with TestClient(create_app(s)) as c:
        headers = {"Idempotency-Key": "k-1"}
        first = c.post("/v1/adapted-models", headers=headers,
                       json={"meta_learner": SINE, "support": sine_support()})
        assert first.status_code == 201
        expire_all(c)
        again = c.post("/v1/adapted-models", headers=headers,
                       json={"meta_learner": SINE, "support": sine_support()})
        assert again.status_code == 201 and again.json()["id"] != first.json()["id"]
        assert "idempotent-replayed" not in again.headers


def test_simultaneous_creates_cannot_overshoot_the_quota(settings):
    from concurrent.futures import ThreadPoolExecutor

    from fastapi.testclient import TestClient

    from app.main import create_app

    s = settings.model_copy(update={"max_models_per_tenant": 5, "batching": "off", "workers": 4})
    with TestClient(create_app(s)) as c:
        def one(i: int) -> int:
            return c.post("/v1/adapted-models", json={"meta_learner": SINE,
                                                      "support": sine_support(1 + i / 10)}).status_code

        with ThreadPoolExecutor(8) as pool:
            codes = sorted(pool.map(one, range(8)))
        assert codes == [201] * 5 + [409] * 3
        assert len(c.get("/v1/adapted-models").json()["items"]) == 5


def test_failed_authentications_are_throttled(settings):
    from fastapi.testclient import TestClient

    from app.main import create_app

    s = settings.model_copy(update={"auth_enabled": True, "auth_failures_per_minute": 6})
    with TestClient(create_app(s)) as c:
        codes = [c.get("/v1/meta-learners", headers={"Authorization": f"Bearer ms_x_{i}"}).status_code
                 for i in range(14)]
        assert codes[:10] == [401] * 10 and codes[-1] == 429
        r = c.get("/v1/meta-learners")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_a_chunked_body_over_the_limit_gets_413(client, settings):
    def chunks():
        piece = b"[" + b"1.0," * 25_000
        for _ in range(settings.max_body_bytes // len(piece) + 2):
            yield piece

    r = client.post("/v1/adapted-models", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.headers["content-type"] == PROBLEM
    assert r.json()["type"].endswith("body-too-large")


def long_label_model(client, ways: int = 3):
    import numpy as np

    rng = np.random.default_rng(3)  # distinct images: no tied probabilities
    support = {"inputs": [(rng.random((28, 28)) < 0.2).astype(float).tolist() for _ in range(ways)],
               "targets": [f"{'x' * 250}{i}" for i in range(ways)]}
    made = client.post("/v1/adapted-models", json={"meta_learner": "omniglot-protonet", "support": support})
    assert made.status_code == 201, made.text
    return made.json()["id"]


def test_top_k_keeps_predictions_small(client):
    ident = long_label_model(client, ways=10)
    queries = {"inputs": [[[0.0] * 28] * 28] * 4}
    full = client.post(f"/v1/adapted-models/{ident}/predictions", json=queries).json()["predictions"]
    top = client.post(f"/v1/adapted-models/{ident}/predictions", json={**queries, "top_k": 2}).json()
    assert all(len(p["probabilities"]) == 10 for p in full)
    for p, q in zip(full, top["predictions"], strict=True):
        assert len(q["probabilities"]) == 2 and q["label"] == p["label"]
        best = sorted(p["probabilities"].items(), key=lambda kv: -kv[1])[:2]
        assert q["probabilities"] == pytest.approx(dict(best))


def test_the_response_size_cap_holds(settings):
    from fastapi.testclient import TestClient

    from app.main import create_app

    s = settings.model_copy(update={"max_response_bytes": 20_000})
    with TestClient(create_app(s)) as c:
        ident = long_label_model(c, ways=10)
        many = {"inputs": [[[0.0] * 28] * 28] * 10}
        r = c.post(f"/v1/adapted-models/{ident}/predictions", json=many)
        assert_4xx_problem(r, 422)
        assert "top_k" in r.json()["detail"]
        ok = c.post(f"/v1/adapted-models/{ident}/predictions", json={**many, "top_k": 1})
        assert ok.status_code == 200 and len(ok.content) <= 20_000


@pytest.mark.parametrize("targets", [[1e15, 0.0], [5.01, 0.0], [True, 0.0], [None, 0.0]])
def test_regression_targets_outside_the_trained_range_or_type(client, targets):
    r = created(client, {"inputs": [[0.0], [1.0]], "targets": targets})
    assert_4xx_problem(r, 422)


@pytest.fixture(autouse=True)
def the_list_still_answers(request):
    """After every hostile case the tenant's listing answers (nothing stored broke it)."""
    client = request.getfixturevalue("client") if "client" in request.fixturenames else None
    yield
    if client is not None:
        r = client.get("/v1/adapted-models", params={"limit": 200})
        assert r.status_code == 200 and isinstance(r.json()["items"], list)
