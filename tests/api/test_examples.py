"""Incremental adaptation: POST /v1/adapted-models/{id}/examples on memory-based learners.
The grown model predicts exactly like one adapted from scratch on the union; the ID stays and
the revision goes up; concurrent updates never lose one; other families answer 409."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.api.helpers import glyph, image_support, png_b64
from tests.api.test_errors import check_problem
from tests.api.test_tenancy_and_reliability import auth, keys

FIRST = image_support(labels=("a", "b"), shots=1)
MORE = image_support(labels=("b", "c"), shots=2)  # an old label and a new one
QUERIES = {"inputs": [png_b64(glyph(k, jitter=1)) for k in range(3)]}


def union(*parts: dict) -> dict:
    return {"inputs": [i for p in parts for i in p["inputs"]],
            "targets": [t for p in parts for t in p["targets"]]}


def adapt(client, name, support, headers=None):
    r = client.post("/v1/adapted-models", json={"meta_learner": name, "support": support},
                    headers=headers or {})
    assert r.status_code == 201, r.text
    return r.json()


def predictions(client, ident, queries, headers=None):
    r = client.post(f"/v1/adapted-models/{ident}/predictions", json=queries, headers=headers or {})
    assert r.status_code == 200, r.text
    return r.json()


def close(a, b, tol=1e-5):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], tol) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(close(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=tol, abs_tol=tol)
    return a == b


def test_matchingnet_grows_exactly_like_adapting_on_the_union(client):
    model = adapt(client, "omniglot-matchingnet", FIRST)
    r = client.post(f"/v1/adapted-models/{model['id']}/examples", json=MORE)
    assert r.status_code == 200, r.text
    grown = r.json()
    assert grown["id"] == model["id"] and grown["revision"] == model["revision"] + 1 == 2
    assert grown["labels"] == ["a", "b", "c"]
    scratch = adapt(client, "omniglot-matchingnet", union(FIRST, MORE))
    assert close(predictions(client, model["id"], QUERIES), predictions(client, scratch["id"], QUERIES))
    assert client.get(f"/v1/adapted-models/{model['id']}").json()["revision"] == 2


def test_neural_process_memory_grows_exactly(client):
    first = {"inputs": [[-3.0], [0.0]], "targets": [0.3, -1.0]}
    more = {"inputs": [[2.0], [4.0]], "targets": [1.2, 0.4]}
    model = adapt(client, "sinusoid-neural-process", first)
    assert client.post(f"/v1/adapted-models/{model['id']}/examples", json=more).status_code == 200
    scratch = adapt(client, "sinusoid-neural-process", union(first, more))
    queries = {"inputs": [[-4.0], [1.0], [3.0]]}
    assert close(predictions(client, model["id"], queries), predictions(client, scratch["id"], queries))


def test_protonet_prototypes_grow_as_running_means_like_adapting_on_the_union(client):
    assert client.get("/v1/meta-learners/omniglot-protonet").json()["adds_examples"] is True
    model = adapt(client, "omniglot-protonet", FIRST)
    grown = client.post(f"/v1/adapted-models/{model['id']}/examples", json=MORE)
    assert grown.status_code == 200, grown.text
    assert grown.json()["labels"] == ["a", "b", "c"] and grown.json()["revision"] == 2
    scratch = adapt(client, "omniglot-protonet", union(FIRST, MORE))
    assert close(predictions(client, model["id"], QUERIES), predictions(client, scratch["id"], QUERIES))
    # and again: a second update on top of the first
    again = image_support(labels=("a", "d"), shots=1)
    assert client.post(f"/v1/adapted-models/{model['id']}/examples", json=again).status_code == 200
    scratch = adapt(client, "omniglot-protonet", union(FIRST, MORE, again))
    assert close(predictions(client, model["id"], QUERIES), predictions(client, scratch["id"], QUERIES))


def test_hypernetwork_re_encodes_only_the_new_pairs_like_adapting_on_the_union(client):
    assert client.get("/v1/meta-learners/sinusoid-hypernet").json()["adds_examples"] is True
    first = {"inputs": [[-3.0], [0.0], [1.0]], "targets": [0.3, -1.0, 0.2]}
    more = {"inputs": [[2.0], [4.0]], "targets": [1.2, 0.4]}
    model = adapt(client, "sinusoid-hypernet", first)
    grown = client.post(f"/v1/adapted-models/{model['id']}/examples", json=more)
    assert grown.status_code == 200 and grown.json()["revision"] == 2
    scratch = adapt(client, "sinusoid-hypernet", union(first, more))
    queries = {"inputs": [[-4.0], [1.5], [3.0]]}
    assert close(predictions(client, model["id"], queries), predictions(client, scratch["id"], queries), tol=1e-4)
    before = predictions(client, adapt(client, "sinusoid-hypernet", first)["id"], queries)
    assert not close(before, predictions(client, model["id"], queries), tol=1e-3)  # it did change


def test_text_protonet_learns_a_new_intent_from_added_examples(client):
    first = {"inputs": ["where is my parcel", "track my order", "reset my password",
                        "i forgot my password"], "targets": ["shipping", "shipping", "login", "login"]}
    more = {"inputs": ["cancel my subscription", "stop my plan please"], "targets": ["cancel", "cancel"]}
    model = adapt(client, "text-protonet", first)
    assert client.post(f"/v1/adapted-models/{model['id']}/examples", json=more).status_code == 200
    queries = {"inputs": ["please cancel the plan", "where's my package"]}
    grown = predictions(client, model["id"], queries)
    scratch = adapt(client, "text-protonet", union(first, more))
    assert close(grown, predictions(client, scratch["id"], queries), tol=1e-4)
    assert [p["label"] for p in grown["predictions"]] == ["cancel", "shipping"]


def test_a_protonet_state_without_counts_is_refused_with_409(client, monkeypatch):
    from app.meta.algorithms.protonet import ProtoNet

    original = ProtoNet.prototypes_of  # where every ProtoNet state is formed

    def without_counts(z, y, ways):  # a state as versions before counts stored it
        return {"prototypes": original(z, y, ways)["prototypes"]}

    monkeypatch.setattr(ProtoNet, "prototypes_of", staticmethod(without_counts))
    model = adapt(client, "omniglot-protonet", FIRST)
    monkeypatch.undo()
    r = client.post(f"/v1/adapted-models/{model['id']}/examples", json=MORE)
    check_problem(r, 409, "per-class counts")
    assert client.get(f"/v1/adapted-models/{model['id']}").json()["revision"] == 1
    assert predictions(client, model["id"], QUERIES)["predictions"]  # still predicts


def test_other_families_refuse_and_bad_examples_are_422(client):
    for name in ("omniglot-anil", "text-protonet-finetune"):
        assert client.get(f"/v1/meta-learners/{name}").json()["adds_examples"] is False
    anil = adapt(client, "omniglot-anil", FIRST)
    r = client.post(f"/v1/adapted-models/{anil['id']}/examples", json=MORE)
    check_problem(r, 409, "cannot add examples")
    model = adapt(client, "omniglot-matchingnet", FIRST)
    bad = {"inputs": MORE["inputs"][:1], "targets": MORE["targets"]}
    check_problem(client.post(f"/v1/adapted-models/{model['id']}/examples", json=bad), 422, "inputs")
    assert client.get(f"/v1/adapted-models/{model['id']}").json()["revision"] == 1


def test_idempotent_examples_are_added_once(client):
    model = adapt(client, "omniglot-matchingnet", FIRST)
    key = {"Idempotency-Key": "grow-1"}
    first = client.post(f"/v1/adapted-models/{model['id']}/examples", json=MORE, headers=key)
    again = client.post(f"/v1/adapted-models/{model['id']}/examples", json=MORE, headers=key)
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true" and again.json()["revision"] == 2
    other = client.post(f"/v1/adapted-models/{model['id']}/examples", json=FIRST, headers=key)
    check_problem(other, 409, "different request body")


@pytest.mark.parametrize("length", [159, 200])
def test_long_idempotency_keys_on_examples_are_stored_within_their_column(client, length):
    """Keys up to the header's maximum (200) work on /examples although the stored form is
    scoped to the model (a 159-200 character key once overflowed the column: a 500 on
    PostgreSQL); one past the maximum is a 422 on both routes."""
    model = adapt(client, "omniglot-matchingnet", FIRST)
    key = {"Idempotency-Key": "k" * length}
    first = client.post(f"/v1/adapted-models/{model['id']}/examples", json=MORE, headers=key)
    assert first.status_code == 200, first.text
    again = client.post(f"/v1/adapted-models/{model['id']}/examples", json=MORE, headers=key)
    assert again.headers["Idempotent-Replayed"] == "true" and again.json()["revision"] == 2
    other = client.post(f"/v1/adapted-models/{model['id']}/examples", json=FIRST, headers=key)
    check_problem(other, 409, "different request body")


def test_idempotency_key_one_past_the_maximum_is_refused_on_every_route(client):
    model = adapt(client, "omniglot-matchingnet", FIRST)
    key = {"Idempotency-Key": "k" * 201}
    check_problem(client.post(f"/v1/adapted-models/{model['id']}/examples", json=MORE, headers=key), 422)
    check_problem(client.post("/v1/adapted-models", json={"meta_learner": "omniglot-matchingnet",
                                                          "support": FIRST}, headers=key), 422)
    assert client.get(f"/v1/adapted-models/{model['id']}").json()["revision"] == 1


def test_concurrent_updates_are_never_lost(client):
    model = adapt(client, "omniglot-matchingnet", FIRST)
    batches = [image_support(labels=("a", "b"), shots=1) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda b: client.post(f"/v1/adapted-models/{model['id']}/examples",
                                                      json=b), batches))
    landed = [a for a in answers if a.status_code == 200]
    assert {a.status_code for a in answers} <= {200, 409} and landed
    for a in answers:
        if a.status_code == 409:
            assert a.json()["type"].endswith("revision-conflict")
    final = client.get(f"/v1/adapted-models/{model['id']}").json()
    assert final["revision"] == 1 + len(landed)
    # the memory holds the first support set plus exactly the updates that landed
    engine = client.app.state.engine
    with client.app.state.session_factory() as session:
        from app.db.models import AdaptedModelRow
        sha = session.get(AdaptedModelRow, model["id"]).artifact_sha256
    assert engine.states.load(sha)["keys"].shape[0] == 2 + 2 * len(landed)


def test_examples_respect_tenancy(settings):
    authed = settings.model_copy(update={"auth_enabled": True, "rate_limit_per_minute": 0})
    with TestClient(create_app(authed)) as client:
        alice, bob = (auth(secret) for _, secret in keys(client, "alice", "bob"))
        model = adapt(client, "omniglot-matchingnet", FIRST, alice)
        r = client.post(f"/v1/adapted-models/{model['id']}/examples", json=MORE, headers=bob)
        assert r.status_code == 404
        assert client.get(f"/v1/adapted-models/{model['id']}", headers=alice).json()["revision"] == 1


@pytest.mark.parametrize("name", ["omniglot-matchingnet", "sinusoid-neural-process"])
def test_memory_learners_declare_their_family(client, name):
    assert client.get(f"/v1/meta-learners/{name}").json()["family"] == "memory"
