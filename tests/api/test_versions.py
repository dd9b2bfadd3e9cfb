"""Adapted models are bound to the exact weights that made them; versions serve side by side."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from fastapi.testclient import TestClient
from safetensors.torch import load_file, save_file

from app.main import create_app
from app.meta.checkpoint import file_sha256
from tests.api.helpers import glyph
from tests.conftest import REPO

NAME = "omniglot-protonet"
PROBLEM = "application/problem+json"


def install(models: Path, version: str, seed: int | None) -> None:
    """Copy the shipped ProtoNet as ``version``; with a seed, re-weight it (a new training run)."""
    source = sorted((REPO / "models" / NAME).iterdir())[0]
    target = models / NAME / version
    shutil.copytree(source, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["version"] = version
    if seed is not None:
        gen = torch.Generator().manual_seed(seed)
        weights = load_file(str(target / "weights.safetensors"))
        weights = {k: v + 0.5 * v.std().nan_to_num() * torch.randn(v.shape, generator=gen)
                   if v.dtype.is_floating_point and v.numel() > 1 else v for k, v in weights.items()}
        save_file(weights, str(target / "weights.safetensors"))
        manifest["weights_sha256"] = file_sha256(target / "weights.safetensors")
    (target / "manifest.json").write_text(json.dumps(manifest))


def images(*kinds: int) -> list:
    """28x28 stroke=1 images, box-downsampled from the 105x105 test glyphs."""
    out = []
    for k in kinds:
        ink = (glyph(k)[:105, :105] < 128).astype(float)
        out.append(ink[:104, :104].reshape(26, 4, 26, 4).mean(axis=(1, 3)).tolist())
        out[-1] = [[0.0] * 28] + [[0.0] + row + [0.0] for row in out[-1]] + [[0.0] * 28]
    return out


SUPPORT = {"inputs": images(0, 1, 2), "targets": ["bar", "dash", "box"]}
QUERIES = {"inputs": images(0, 1, 2, 3)}


def test_predictions_run_on_the_weights_that_adapted_the_model(settings, tmp_path):
    models = tmp_path / "models"
    install(models, "1.0.0", seed=None)
    s = settings.model_copy(update={"models_dir": models})
    with TestClient(create_app(s)) as c:
        made = c.post("/v1/adapted-models", json={"meta_learner": NAME, "support": SUPPORT})
        assert made.status_code == 201 and made.json()["meta_learner_version"] == "1.0.0"
        ident = made.json()["id"]
        before = c.post(f"/v1/adapted-models/{ident}/predictions", json=QUERIES).json()

    # a new training run ships as 1.1.0 beside 1.0.0: the bare name now means 1.1.0, the old
    # ID still predicts exactly as before (on 1.0.0's weights), and 1.0.0 can be pinned
    install(models, "1.1.0", seed=1)
    with TestClient(create_app(s)) as c:
        described = c.get(f"/v1/meta-learners/{NAME}").json()
        assert described["version"] == "1.1.0" and described["ref"] == f"{NAME}@1.1.0"
        assert [v["version"] for v in described["versions"]] == ["1.0.0", "1.1.0"]
        assert c.get(f"/v1/meta-learners/{NAME}@1.0.0").json()["version"] == "1.0.0"
        assert c.get(f"/v1/meta-learners/{NAME}@9.9.9").status_code == 404
        after = c.post(f"/v1/adapted-models/{ident}/predictions", json=QUERIES).json()
        assert after == before
        newest = c.post("/v1/adapted-models", json={"meta_learner": NAME, "support": SUPPORT}).json()
        pinned = c.post("/v1/adapted-models", json={"meta_learner": f"{NAME}@1.0.0",
                                                    "support": SUPPORT}).json()
        assert newest["meta_learner_version"] == "1.1.0" and pinned["meta_learner_version"] == "1.0.0"
        assert c.post(f"/v1/adapted-models/{pinned['id']}/predictions", json=QUERIES).json() == before
        old = c.get("/v1/adapted-models", params={"meta_learner": f"{NAME}@1.0.0"}).json()["items"]
        assert {m["id"] for m in old} == {ident, pinned["id"]}

    # 1.0.0 is uninstalled: its adapted models refuse to predict (410), never answer wrongly
    shutil.rmtree(models / NAME / "1.0.0")
    with TestClient(create_app(s)) as c:
        r = c.post(f"/v1/adapted-models/{ident}/predictions", json=QUERIES)
        assert r.status_code == 410 and r.headers["content-type"] == PROBLEM
        body = r.json()
        assert body["type"] == "urn:metaserve:problem:meta-learner-version-retired"
        assert "1.0.0" in body["detail"] and "1.1.0" in body["detail"]
        q = c.get(f"/v1/adapted-models/{ident}/predictions", params={"inputs": json.dumps(QUERIES["inputs"][:1])})
        assert q.status_code == 410
        assert c.get(f"/v1/adapted-models/{ident}").status_code == 200  # still listed, deletable
        assert c.post(f"/v1/adapted-models/{newest['id']}/predictions", json=QUERIES).status_code == 200


def test_weights_replaced_under_the_same_version_are_refused(settings, tmp_path):
    models = tmp_path / "models"
    install(models, "1.0.0", seed=None)
    s = settings.model_copy(update={"models_dir": models})
    with TestClient(create_app(s)) as c:
        ident = c.post("/v1/adapted-models", json={"meta_learner": NAME, "support": SUPPORT}).json()["id"]
    shutil.rmtree(models / NAME / "1.0.0")
    install(models, "1.0.0", seed=2)  # same name and version, other weights
    with TestClient(create_app(s)) as c:
        r = c.post(f"/v1/adapted-models/{ident}/predictions", json=QUERIES)
        assert r.status_code == 410, r.text
        assert r.json()["type"].endswith("meta-learner-version-retired")
