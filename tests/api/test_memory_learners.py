"""The memory-based family over HTTP: Matching Networks on images (the memory is the
embedded support set) and an attentive neural process on sinusoids (predictions with a
standard deviation)."""

from __future__ import annotations

import math

from tests.api.helpers import glyph, image_support, png_b64, sine_support


def test_matchingnet_adapts_and_classifies_pngs(client):
    described = client.get("/v1/meta-learners/omniglot-matchingnet").json()
    assert described["family"] == "memory" and described["algorithm"] == "matchingnet"
    made = client.post("/v1/adapted-models", json={"meta_learner": "omniglot-matchingnet",
                                                   "support": image_support(shots=2)})
    assert made.status_code == 201, made.text
    queries = [png_b64(glyph(k, jitter=1)) for k in range(3)]
    r = client.post(f"/v1/adapted-models/{made.json()['id']}/predictions", json={"inputs": queries})
    assert r.status_code == 200
    predictions = r.json()["predictions"]
    assert [p["label"] for p in predictions] == ["a", "b", "c"]
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-4 for p in predictions)


def test_neural_process_predicts_means_with_standard_deviations(client):
    described = client.get("/v1/meta-learners/sinusoid-neural-process").json()
    assert described["family"] == "memory"
    made = client.post("/v1/adapted-models", json={"meta_learner": "sinusoid-neural-process",
                                                   "support": sine_support()})
    assert made.status_code == 201, made.text
    r = client.post(f"/v1/adapted-models/{made.json()['id']}/predictions",
                    json={"inputs": [[-4.0], [0.5], [4.9]]})
    body = r.json()
    assert body["task_type"] == "regression" and len(body["predictions"]) == 3
    assert len(body["std"]) == 3 and all(s > 0 for s in body["std"])
    assert all(math.isfinite(v) for v in body["predictions"])
    # the other regression learners say nothing about spread
    other = client.post("/v1/adapted-models", json={"meta_learner": "sinusoid-maml",
                                                    "support": sine_support()}).json()["id"]
    plain = client.post(f"/v1/adapted-models/{other}/predictions", json={"inputs": [[0.0]]}).json()
    assert plain["std"] is None


def test_neural_process_is_uncertain_far_from_its_memory(client):
    """Near the support points the spread is smaller than far away from all of them."""
    support = {"inputs": [[-1.0], [-0.5], [0.0], [0.5], [1.0]],
               "targets": [2 * math.sin(x - 0.3) for x in (-1.0, -0.5, 0.0, 0.5, 1.0)]}
    made = client.post("/v1/adapted-models", json={"meta_learner": "sinusoid-neural-process",
                                                   "support": support}).json()["id"]
    std = client.post(f"/v1/adapted-models/{made}/predictions",
                      json={"inputs": [[0.0], [4.8]]}).json()["std"]
    assert std[0] < std[1]
