"""Text meta-learners over HTTP: plain sentences in, intents out; precise errors."""

from __future__ import annotations

import pytest

from tests.api.test_errors import check_problem

pytestmark = pytest.mark.slow

NAME = "text-protonet"
SUPPORT = {
    "inputs": ["I forgot my password", "I can't log in to my account", "reset my password please",
               "where is my parcel", "my order has not arrived", "track my delivery",
               "I want my money back", "refund this purchase", "how do I get a refund"],
    "targets": ["login", "login", "login", "shipping", "shipping", "shipping",
                "refund", "refund", "refund"],
}


def adapt(client, support=SUPPORT):
    return client.post("/v1/adapted-models", json={"meta_learner": NAME, "support": support})


@pytest.mark.parametrize("name", [NAME, f"{NAME}@1.0.0"])
def test_text_adapt_and_predict(client, name):
    described = client.get(f"/v1/meta-learners/{name}").json()
    assert described["input"]["kind"] == "text" and described["input"]["encoder"] == "all-MiniLM-L6-v2"
    made = client.post("/v1/adapted-models", json={"meta_learner": name, "support": SUPPORT})
    assert made.status_code == 201, made.text
    assert made.json()["labels"] == ["login", "shipping", "refund"]
    r = client.post(f"/v1/adapted-models/{made.json()['id']}/predictions",
                    json={"inputs": ["the password reset link does not work",
                                     "the package is late", "please give me a refund"]})
    assert r.status_code == 200
    assert [p["label"] for p in r.json()["predictions"]] == ["login", "shipping", "refund"]


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_a_sentence_gets_the_same_prediction_whatever_else_the_request_holds(client, version):
    """Each sentence's embedding depends on the sentence only (int8 included: one call per
    sentence), and the process's embedding cache hands back exactly what embedding it again gives."""
    made = client.post("/v1/adapted-models", json={"meta_learner": f"{NAME}@{version}", "support": SUPPORT})
    url = f"/v1/adapted-models/{made.json()['id']}/predictions"
    query = "my parcel has been stuck in customs for two weeks"
    alone = client.post(url, json={"inputs": [query]}).json()["predictions"][0]
    others = ["hello there", "I never got my refund and I am really quite upset about it", query, "login"]
    batched = client.post(url, json={"inputs": others}).json()["predictions"][2]
    # the same up to float sums over another batch size (int8 embeddings batched with others
    # once moved probabilities by ~1e-2)
    assert batched["label"] == alone["label"]
    assert batched["probabilities"] == pytest.approx(alone["probabilities"], rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("inputs, status, contains", [
    ([""] + SUPPORT["inputs"][1:], 422, "empty"),
    (["   "] + SUPPORT["inputs"][1:], 422, "empty"),
    ([12] + SUPPORT["inputs"][1:], 422, "strings"),
    ([["a list"]] + SUPPORT["inputs"][1:], 422, "strings"),
    (["x" * 513] + SUPPORT["inputs"][1:], 422, "exceeds 512"),
])
def test_bad_text_support(client, inputs, status, contains):
    check_problem(adapt(client, {"inputs": inputs, "targets": SUPPORT["targets"]}), status, contains)


def test_bad_text_queries(client):
    ident = adapt(client).json()["id"]
    url = f"/v1/adapted-models/{ident}/predictions"
    check_problem(client.post(url, json={"inputs": [None]}), 422)
    check_problem(client.post(url, json={"inputs": ["ok", ""]}), 422, "empty")
    check_problem(client.post(url, json={"inputs": ["x"] * 257}), 422, "limit")


def test_out_of_scope_inputs_abstain_below_the_threshold(client):
    made = client.post("/v1/adapted-models", json={"meta_learner": NAME, "support": SUPPORT,
                                                   "options": {"abstain_threshold": 0.9}})
    assert made.status_code == 201 and made.json()["abstain_threshold"] == 0.9
    r = client.post(f"/v1/adapted-models/{made.json()['id']}/predictions",
                    json={"inputs": ["what is the capital of mongolia", "the package is late"]})
    first, second = r.json()["predictions"]
    assert first["label"] is None and max(first["probabilities"].values()) < 0.9
    assert second["label"] == "shipping" and second["probabilities"]["shipping"] >= 0.9


def test_abstaining_is_for_classification_only(client):
    r = client.post("/v1/adapted-models", json={
        "meta_learner": "sinusoid-maml", "options": {"abstain_threshold": 0.5},
        "support": {"inputs": [[0.0], [1.0]], "targets": [0.0, 1.0]}})
    check_problem(r, 422, "classification")
    check_problem(client.post("/v1/adapted-models", json={
        "meta_learner": NAME, "support": SUPPORT, "options": {"abstain_threshold": 1.5}}), 422)


@pytest.mark.parametrize("version, runtime", [("1.0.0", "torch"), ("1.1.0", "onnx-int8")])
def test_each_version_serves_the_embeddings_it_was_trained_on(client, version, runtime):
    """The served probabilities are the in-process computation on that version's runtime (to
    float noise: micro-batched forwards sum in another order), not the other runtime's: 1.0.0
    keeps PyTorch (its adapted models predict as they always did), 1.1.0 runs int8 ONNX."""
    import torch

    from app.meta.checkpoint import load_meta_learner
    from app.meta.text_encoder import load_encoder

    described = client.get(f"/v1/meta-learners/{NAME}@{version}").json()
    assert (described["input"]["runtime"] or "torch") == runtime
    made = client.post("/v1/adapted-models", json={"meta_learner": f"{NAME}@{version}", "support": SUPPORT})
    assert made.status_code == 201, made.text
    queries = ["the password reset link does not work", "the package is late", "please give me a refund"]
    served = client.post(f"/v1/adapted-models/{made.json()['id']}/predictions", json={"inputs": queries}).json()

    learner, _ = load_meta_learner(f"models/{NAME}/{version}")
    labels = ["login", "shipping", "refund"]
    y = torch.tensor([labels.index(t) for t in SUPPORT["targets"]])

    def expected(on: str) -> torch.Tensor:
        encoder = load_encoder("all-MiniLM-L6-v2", on)
        with torch.no_grad():
            state = learner.adapt(encoder.encode(SUPPORT["inputs"]), y, len(labels))
            return torch.softmax(learner.predict(state, encoder.encode(queries)), -1).double()

    got = torch.tensor([[p["probabilities"][label] for label in labels] for p in served["predictions"]],
                       dtype=torch.float64)
    other = "onnx-int8" if runtime == "torch" else "torch"
    def relative(e: torch.Tensor) -> float:  # the probabilities are near 0 and 1: compare relatively
        return float(((got - e).abs() / e).max())

    assert relative(expected(runtime)) < 1e-4
    assert relative(expected(other)) > 1e-2  # the runtimes really differ


@pytest.mark.parametrize("version, encoder", [("1.0.0", "all-MiniLM-L6-v2"),
                                              ("1.1.0", "all-MiniLM-L6-v2-layers-4-6"),
                                              ("1.2.0", "all-MiniLM-L6-v2-layers-4-6")])
def test_the_softmax_head_learner_adapts_in_the_request_the_same_way_every_time_and_cannot_grow(
        client, version, encoder):
    name = f"text-protonet-head@{version}"
    described = client.get(f"/v1/meta-learners/{name}").json()
    assert described["algorithm"] == "protonet-softmax-head" and described["adds_examples"] is False
    assert described["input"]["encoder"] == encoder
    queries = {"inputs": ["the password reset link does not work", "the package is late",
                          "please give me a refund"]}
    answers = []
    for _ in range(2):
        made = client.post("/v1/adapted-models", json={"meta_learner": name, "support": SUPPORT})
        assert made.status_code == 201, made.text  # synchronous: no job
        assert made.json()["labels"] == ["login", "shipping", "refund"]
        r = client.post(f"/v1/adapted-models/{made.json()['id']}/predictions", json=queries)
        assert r.status_code == 200
        answers.append(r.json()["predictions"])
    assert [p["label"] for p in answers[0]] == ["login", "shipping", "refund"]
    assert answers[0] == answers[1]  # the same support set, the same head
    grown = client.post(f"/v1/adapted-models/{made.json()['id']}/examples",
                        json={"inputs": ["cancel my plan"], "targets": ["cancel"]})
    check_problem(grown, 409, "examples")
    steps = client.post("/v1/adapted-models", json={"meta_learner": name, "support": SUPPORT,
                                                    "options": {"steps": 3}})
    check_problem(steps, 422, "steps")


NAMED = {  # eight intents whose labels say what they are
    "password_reset": ["I forgot my password", "reset my password please"],
    "order_tracking": ["where is my parcel", "track my delivery"],
    "refund_request": ["I want my money back", "refund this purchase"],
    "cancel_subscription": ["stop my monthly plan", "end my membership"],
    "weather_forecast": ["will it rain tomorrow", "how hot is it outside"],
    "set_alarm": ["wake me up at seven", "ring at 6 am"],
    "play_music": ["put on some jazz", "start my playlist"],
    "book_restaurant": ["a table for two tonight", "reserve dinner at an italian place"],
}
QUERIES = {"inputs": ["my login code expired", "the courier lost my box", "I need a forecast for the weekend",
                      "turn on the radio", "book me a table at eight"]}


def probabilities(client, name: str, labels: list) -> list[list[float]]:
    support = {"inputs": [s for sentences in NAMED.values() for s in sentences],
               "targets": [label for label in labels for _ in range(2)]}
    made = client.post("/v1/adapted-models", json={"meta_learner": name, "support": support})
    assert made.status_code == 201, made.text
    r = client.post(f"/v1/adapted-models/{made.json()['id']}/predictions", json=QUERIES)
    assert r.status_code == 200, r.text
    return [[p["probabilities"][str(label)] for label in labels] for p in r.json()["predictions"]]


def test_the_head_reads_label_names_that_say_something_and_no_others(client):
    names, opaque, numbers = list(NAMED), [f"class_{i:03d}" for i in range(8)], list(range(8))
    described = client.get("/v1/meta-learners/text-protonet-head@1.2.0").json()
    assert described["reads_label_names"] is True
    assert client.get("/v1/meta-learners/text-protonet-head@1.1.0").json()["reads_label_names"] is False
    reading = probabilities(client, "text-protonet-head@1.2.0", names)
    blind = probabilities(client, "text-protonet-head@1.1.0", names)  # the same head, no names
    assert reading != probabilities(client, "text-protonet-head@1.2.0", opaque)  # the names counted
    # opaque labels and numbers add nothing: the head fitted on the support alone, as 1.1.0's
    # (which differs only by its temperature)
    for labels in (opaque, numbers):
        alone = probabilities(client, "text-protonet-head@1.2.0", labels)
        assert [row.index(max(row)) for row in alone] == [row.index(max(row)) for row in blind]
    assert blind == probabilities(client, "text-protonet-head@1.1.0", opaque)  # 1.1.0 never reads them
    assert [row.index(max(row)) for row in reading] == [0, 1, 4, 6, 7]
