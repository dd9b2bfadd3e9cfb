"""Photo meta-learners over HTTP: base64 photographs in, classes out; every bad photo a 422
that names its input; incremental examples equal to adapting from scratch."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tests.api.test_errors import check_problem
from tests.api.test_examples import close, predictions, union
from tests.conftest import REPO

pytestmark = pytest.mark.slow

NAME = "photo-protonet"
PHOTOS = REPO / "examples" / "photos"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def photo(name: str) -> str:
    return b64((PHOTOS / name).read_bytes())


def encoded(image: Image.Image, fmt: str = "JPEG") -> str:
    buf = io.BytesIO()
    image.save(buf, fmt)
    return b64(buf.getvalue())


SUPPORT = {"inputs": [photo(f"{label}-{i}.jpg") for label in ("cat", "coffee") for i in (1, 2, 3)],
           "targets": ["cat"] * 3 + ["coffee"] * 3}
QUERIES = {"inputs": [photo("query-coffee.jpg"), photo("query-cat.jpg")]}


def adapt(client, support=SUPPORT):
    return client.post("/v1/adapted-models", json={"meta_learner": NAME, "support": support})


def test_photo_learner_describes_its_input(client):
    described = client.get(f"/v1/meta-learners/{NAME}").json()
    spec = described["input"]
    assert spec["kind"] == "image" and spec["codec"] == "photo"
    assert spec["shape"] == [3, 224, 224] and spec["backbone"] == "efficientnet-lite0"
    assert "centre-cropped" in spec["preprocessing"] and "JPEG" in spec["native"]
    assert described["adds_examples"] is True


def test_adapt_on_six_photos_and_predict(client):
    made = adapt(client)
    assert made.status_code == 201, made.text
    assert made.json()["labels"] == ["cat", "coffee"]
    preds = predictions(client, made.json()["id"], QUERIES)["predictions"]
    assert [p["label"] for p in preds] == ["coffee", "cat"]
    assert all(max(p["probabilities"].values()) > 0.5 for p in preds)


def test_more_photos_grow_the_model_exactly_like_adapting_on_the_union(client):
    first = {"inputs": SUPPORT["inputs"][:1] + SUPPORT["inputs"][3:4], "targets": ["cat", "coffee"]}
    more = {"inputs": SUPPORT["inputs"][1:3] + SUPPORT["inputs"][4:],
            "targets": ["cat", "cat", "coffee", "coffee"]}
    model = adapt(client, first).json()
    grown = client.post(f"/v1/adapted-models/{model['id']}/examples", json=more)
    assert grown.status_code == 200, grown.text
    scratch = adapt(client, union(first, more)).json()
    assert close(predictions(client, model["id"], QUERIES), predictions(client, scratch["id"], QUERIES))


def test_the_same_photo_in_any_colour_mode_or_format_is_served(client):
    cat = Image.open(PHOTOS / "query-cat.jpg")
    inputs = [encoded(cat.convert("L"), "PNG"), encoded(cat.convert("RGBA"), "PNG"),
              encoded(cat.convert("CMYK")), encoded(cat, "WEBP"), encoded(cat.convert("P"), "PNG"),
              "data:image/jpeg;base64," + photo("query-cat.jpg")]
    ident = adapt(client).json()["id"]
    preds = predictions(client, ident, {"inputs": inputs})["predictions"]
    assert len(preds) == len(inputs) and all(p["label"] == "cat" for p in preds[1:])


def noise_jpeg(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (height, width, 3), np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def bomb_png() -> str:
    """8 KB of PNG that decodes to 5000x5000 pixels (25 million, over the default 16.7 million)."""
    buf = io.BytesIO()
    Image.new("L", (5000, 5000)).save(buf, "PNG", optimize=True)
    return b64(buf.getvalue())


BAD = [
    ("not base64 at all!", 422, "inputs[2]: not valid base64"),
    (b64(b"plain text, not an image"), 422, "inputs[2]: not a jpeg, png or webp"),
    (encoded(Image.new("RGB", (20, 20)), "GIF"), 422, "inputs[2]: unsupported image format 'gif'"),
    (b64(noise_jpeg(200, 150)[:3000]), 422, "inputs[2]: cannot decode"),
    (encoded(Image.new("RGB", (12, 300)), "PNG"), 422, "inputs[2]: image of 12x300 pixels"),
    (bomb_png(), 422, "inputs[2]: image of 5000x5000 pixels exceeds the limit"),
    ("", 422, "inputs[2]"),
    (17, 422, "inputs[2]: expected a base64"),
    ([[0.0, 1.0]], 422, "inputs[2]: expected a base64 jpeg/png/webp string or preprocessed pixels"),
    (np.full((3, 224, 224), 2.0).tolist(), 422, "inputs[2]: preprocessed pixels must lie in [-1, 1]"),
]


@pytest.mark.parametrize("bad, status, contains", BAD, ids=[c for _, _, c in BAD])
def test_bad_photo_support_names_the_input(client, bad, status, contains):
    inputs = SUPPORT["inputs"][:2] + [bad] + SUPPORT["inputs"][3:]
    r = adapt(client, {"inputs": inputs, "targets": SUPPORT["targets"][:2] + ["cat"] + SUPPORT["targets"][3:]})
    check_problem(r, status, contains.replace("inputs[2]", "support.inputs[2]"))


@pytest.mark.parametrize("bad, status, contains", BAD[:6], ids=[c for _, _, c in BAD[:6]])
def test_bad_photo_queries_name_the_input(client, bad, status, contains):
    ident = adapt(client).json()["id"]
    r = client.post(f"/v1/adapted-models/{ident}/predictions",
                    json={"inputs": [photo("query-cat.jpg"), photo("query-coffee.jpg"), bad]})
    check_problem(r, status, contains)
    # nothing was half-done: the model still serves
    assert client.post(f"/v1/adapted-models/{ident}/predictions", json=QUERIES).status_code == 200


def test_preprocessed_pixels_are_served_like_the_photo(client):
    from app.meta.photo_preprocess import preprocess_photo

    pixels = preprocess_photo((PHOTOS / "query-cat.jpg").read_bytes(), 224, 4096 * 4096)
    ident = adapt(client).json()["id"]
    as_photo = predictions(client, ident, {"inputs": [photo("query-cat.jpg")]})
    # 4 decimals keep the body under the test server's 2 MB limit (pixels step by 2/255)
    as_pixels = predictions(client, ident, {"inputs": [np.round(pixels.astype(np.float64), 4).tolist()]})
    assert close(as_photo, as_pixels, tol=1e-3)


def test_photo_finetune_is_a_deterministic_job(client):
    from tests.api.test_async_adaptation import wait_for

    described = client.get("/v1/meta-learners/photo-finetune").json()
    assert described["input"]["codec"] == "photo-pixels" and described["family"] == "optimization"
    body = {"meta_learner": "photo-finetune", "support": SUPPORT}
    made = client.post("/v1/adapted-models", json=body)
    assert made.status_code == 202, made.text
    ready = wait_for(client, made.json()["id"], timeout=120)
    assert ready["status"] == "ready" and ready["adaptation"]["steps"] == 10
    first = predictions(client, ready["id"], QUERIES)
    assert [p["label"] for p in first["predictions"]] == ["coffee", "cat"]
    # the same support set fine-tunes to the same state: views and splits are seeded by it
    again = wait_for(client, client.post("/v1/adapted-models", json=body).json()["id"], timeout=120)
    assert predictions(client, again["id"], QUERIES) == first
    bad = {"inputs": SUPPORT["inputs"][:5] + ["bm90IGFuIGltYWdl"], "targets": SUPPORT["targets"]}
    check_problem(client.post("/v1/adapted-models", json={"meta_learner": "photo-finetune", "support": bad}),
                  422, "support.inputs[5]: not a jpeg")
