"""Bad input gets a precise 4xx problem body, never a 500."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from tests.api.helpers import glyph, image_support, png_b64, sine_support

PROBLEM = "application/problem+json"


def check_problem(r, status: int, contains: str = "") -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert {"type", "title", "status", "detail", "instance"} <= set(body)
    assert body["status"] == status
    assert contains.lower() in body["detail"].lower(), body["detail"]
    return body


def post(client, body):
    return client.post("/v1/adapted-models", json=body)


def body_for(support, meta_learner="sinusoid-maml", **options):
    b = {"meta_learner": meta_learner, "support": support}
    if options:
        b["options"] = options
    return b


def test_unknown_meta_learner(client):
    check_problem(post(client, body_for(sine_support(), "nope")), 404, "no meta-learner named 'nope'")
    check_problem(client.get("/v1/meta-learners/nope"), 404, "nope")


def test_unknown_adapted_model(client):
    check_problem(client.get("/v1/adapted-models/0123456789abcdef0123456789abcdef"), 404)
    check_problem(client.get("/v1/adapted-models/not-an-id"), 404)
    check_problem(client.post("/v1/adapted-models/zzz/predictions", json={"inputs": [[1]]}), 404)


@pytest.mark.parametrize("support,contains", [
    ({"inputs": [[1.0], [2.0]], "targets": [1.0]}, "2 items but support.targets has 1"),
    ({"inputs": [[1.0, 2.0]], "targets": [1.0]}, "expected a vector of shape [1]"),
    ({"inputs": ["abc"], "targets": [1.0]}, "takes numbers, not strings"),
    ({"inputs": [[1.0]], "targets": ["a"]}, "regression targets must be numbers"),
    ({"inputs": [[[1.0]]], "targets": [1.0]}, "expected a vector of shape [1]"),
])
def test_regression_support_errors(client, support, contains):
    check_problem(post(client, body_for(support)), 422, contains)


def test_nan_and_infinity_are_refused(client):
    raw = '{"meta_learner": "sinusoid-maml", "support": {"inputs": [[NaN]], "targets": [1.0]}}'
    r = client.post("/v1/adapted-models", content=raw, headers={"content-type": "application/json"})
    check_problem(r, 422, "nan")
    raw = '{"meta_learner": "sinusoid-maml", "support": {"inputs": [[1.0]], "targets": [Infinity]}}'
    r = client.post("/v1/adapted-models", content=raw, headers={"content-type": "application/json"})
    check_problem(r, 422)
    check_problem(post(client, body_for({"inputs": [[1e300]], "targets": [1.0]})), 422, "float32")


def test_classification_support_errors(client):
    one_class = image_support(("a",), shots=2)
    check_problem(post(client, body_for(one_class, "omniglot-protonet")), 422, "at least 2 classes")
    mixed = image_support(("a", "b"))
    mixed["targets"] = ["a", 1]
    check_problem(post(client, body_for(mixed, "omniglot-protonet")), 422, "not both")
    floats = image_support(("a", "b"))
    floats["targets"] = [0.5, 1.5]
    check_problem(post(client, body_for(floats, "omniglot-protonet")), 422, "strings or integers")


def test_limits_on_ways_shots_support_steps_and_queries(client):
    limits = client.get("/v1/meta-learners/omniglot-protonet").json()["limits"]
    tiny = [[[0.0] * 28] * 28]
    ways = {"inputs": tiny * (limits["max_ways"] + 1),
            "targets": list(range(limits["max_ways"] + 1))}
    check_problem(post(client, body_for(ways, "omniglot-protonet")), 422, "ways")
    shots = {"inputs": tiny * (limits["max_shots"] + 1) + tiny,
             "targets": [0] * (limits["max_shots"] + 1) + [1]}
    check_problem(post(client, body_for(shots, "omniglot-protonet")), 422, "shots")
    sine_limits = client.get("/v1/meta-learners/sinusoid-maml").json()["limits"]
    n = sine_limits["max_support"] + 1
    big = {"inputs": [[0.0]] * n, "targets": [0.0] * n}
    check_problem(post(client, body_for(big)), 422, "support set")
    check_problem(post(client, body_for(sine_support(), steps=sine_limits["max_steps"] + 1)),
                  422, "steps")
    check_problem(post(client, body_for(image_support(), "omniglot-protonet", steps=3)),
                  422, "does not apply")
    ident = post(client, body_for(sine_support())).json()["id"]
    many = {"inputs": [[0.0]] * (sine_limits["max_queries"] + 1)}
    check_problem(client.post(f"/v1/adapted-models/{ident}/predictions", json=many), 422, "limit")


def test_image_errors(client):
    def with_first(value):
        s = image_support()
        s["inputs"][0] = value
        return body_for(s, "omniglot-protonet")

    check_problem(post(client, with_first("%%%not base64")), 422, "base64")
    check_problem(post(client, with_first(base64.b64encode(b"hello").decode())), 422, "decode")
    buf = io.BytesIO()
    Image.fromarray(glyph(0)).save(buf, "GIF")
    check_problem(post(client, with_first(base64.b64encode(buf.getvalue()).decode())), 422,
                  "format")
    check_problem(post(client, with_first([[0.0] * 27] * 28)), 422, "shape")
    check_problem(post(client, with_first([[2.0] * 28] * 28)), 422, "[0.0, 1.0]")
    check_problem(post(client, with_first([[0.0] * 28] * 27 + [[0.0] * 5])), 422, "regular")
    check_problem(post(client, with_first(3.0)), 422, "shape")


def test_decompression_bomb_and_oversized_images(client, settings):
    bomb = np.full((5000, 5000), 255, np.uint8)  # over the 16,777,216-pixel default limit
    buf = io.BytesIO()
    Image.fromarray(bomb).save(buf, "PNG", optimize=True)
    s = image_support()
    s["inputs"][0] = base64.b64encode(buf.getvalue()).decode()
    check_problem(post(client, body_for(s, "omniglot-protonet")), 422, "exceeds")
    # the limits are settings: 1 MiB and 1,048,576 pixels here
    small = settings.model_copy(update={"max_image_bytes": 1024 * 1024, "max_image_pixels": 1024 * 1024})
    with TestClient(create_app(small)) as limited:
        noise = np.random.default_rng(0).integers(0, 255, (1024, 1024), dtype=np.uint8)
        s["inputs"][0] = png_b64(noise)  # 1,048,576 pixels (allowed) but over 1 MiB of PNG
        check_problem(post(limited, body_for(s, "omniglot-protonet")), 422, "bytes")
        s["inputs"][0] = png_b64(np.zeros((1025, 1024), np.uint8))
        check_problem(post(limited, body_for(s, "omniglot-protonet")), 422, "exceeds the limit of 1048576")


@pytest.mark.parametrize("body", [
    {"support": {"inputs": [[1.0]], "targets": [1.0]}},
    {"meta_learner": 5, "support": {"inputs": [[1.0]], "targets": [1.0]}},
    {"meta_learner": "sinusoid-maml", "support": {"inputs": [], "targets": []}},
    {"meta_learner": "sinusoid-maml", "support": {"inputs": [[1.0]], "targets": [1.0]},
     "options": {"steps": -1}},
    {"meta_learner": "sinusoid-maml", "support": "nope"},
    {"meta_learner": "sinusoid-maml", "support": {"inputs": [[1.0]], "targets": [1.0]},
     "unexpected": True},
    [1, 2, 3],
])
def test_wrong_json_types(client, body):
    check_problem(post(client, body), 422)


def test_malformed_json_and_oversized_body(client, settings):
    r = client.post("/v1/adapted-models", content=b"{not json",
                    headers={"content-type": "application/json"})
    check_problem(r, 422)
    big = b'{"meta_learner": "' + b"x" * settings.max_body_bytes + b'"}'
    r = client.post("/v1/adapted-models", content=big, headers={"content-type": "application/json"})
    check_problem(r, 413, "exceeds")


def test_ttl_above_maximum(client, settings):
    check_problem(post(client, body_for(sine_support(), ttl_seconds=settings.max_ttl_seconds + 1)),
                  422, "ttl_seconds")


def test_bad_prediction_query_strings(client):
    ident = post(client, body_for(sine_support())).json()["id"]
    url = f"/v1/adapted-models/{ident}/predictions"
    check_problem(client.get(url, params={"inputs": "[1,"}), 422, "not valid json")
    check_problem(client.get(url, params={"inputs": "{}"}), 422, "json array")
    check_problem(client.get(url, params={"inputs": "[]"}), 422, "json array")
    check_problem(client.get(url, params={"inputs": "[[[[[[1]]]]]]"}), 422, "nest deeper")
    check_problem(client.get(url), 422)
    check_problem(client.post(url, json={"inputs": []}), 422)


def test_bad_list_cursor(client):
    check_problem(client.get("/v1/adapted-models", params={"cursor": "@@@"}), 422, "cursor")
    check_problem(client.get("/v1/adapted-models", params={"limit": 0}), 422)
