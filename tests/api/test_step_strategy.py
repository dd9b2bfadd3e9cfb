"""options.steps = "auto": a version's step-strategy model chooses the inner steps per task."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from app.main import create_app
from app.meta.checkpoint import file_sha256
from app.meta.strategy import FEATURES, StepStrategy
from tests.conftest import REPO

NAME = "sinusoid-maml"
SUPPORT = {"inputs": [[-4.0], [-2.0], [0.0], [1.5], [3.0]], "targets": [1.96, -1.2, -0.96, 1.68, 1.2]}
QUERIES = {"inputs": [[-3.0], [0.5], [2.5]]}
PROBLEM = "application/problem+json"


def install_with_strategy(models: Path, favoured: int, candidates=(1, 3, 10, 20)) -> None:
    """sinusoid-maml 1.0.0, and 1.1.0: the same weights with a strategy that always predicts
    ``favoured`` steps to be far better than the default (a hand-built output bias)."""
    source = REPO / "models" / NAME / "1.0.0"
    shutil.copytree(source, models / NAME / "1.0.0")
    target = models / NAME / "1.1.0"
    target.mkdir(parents=True)
    shutil.copyfile(source / "weights.safetensors", target / "weights.safetensors")
    strategy = StepStrategy.initial(list(candidates), 10, torch.zeros(len(FEATURES)),
                                    torch.ones(len(FEATURES)))
    strategy.tensors["w3"] = torch.zeros_like(strategy.tensors["w3"])
    strategy.tensors["b3"] = torch.tensor([-5.0 if k == favoured else 0.0 for k in candidates])
    strategy.save(target / "strategy.safetensors")
    manifest = json.loads((source / "manifest.json").read_text())
    manifest["version"] = "1.1.0"
    manifest["step_strategy"] = {"file": "strategy.safetensors",
                                 "sha256": file_sha256(target / "strategy.safetensors"),
                                 "features": list(FEATURES), "candidates": list(candidates),
                                 "default": 10, "margin": 0.05}
    (target / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def auto_client(settings, tmp_path):
    models = tmp_path / "models"
    install_with_strategy(models, favoured=3)
    with TestClient(create_app(settings.model_copy(update={"models_dir": models}))) as c:
        yield c


def adapt(c: TestClient, ref: str, **options) -> dict:
    response = c.post("/v1/adapted-models", json={"meta_learner": ref, "support": SUPPORT,
                                                    "options": options})
    assert response.status_code == 201, response.text
    return response.json()


def predict(c: TestClient, ident: str) -> list[float]:
    return c.post(f"/v1/adapted-models/{ident}/predictions", json=QUERIES).json()["predictions"]


def test_leaving_steps_out_uses_the_strategy_and_equals_those_steps_given_explicitly(auto_client):
    c = auto_client
    described = c.get(f"/v1/meta-learners/{NAME}").json()
    defaults = described["adaptation_defaults"]
    assert {k: defaults[k] for k in ("steps", "fallback_steps", "step_candidates")} == {
        "steps": "auto", "fallback_steps": 10, "step_candidates": [1, 3, 10, 20]}
    assert "step_candidates" in defaults["auto_cost"]
    auto = adapt(c, NAME)
    assert auto["adaptation"]["steps"] == 3 and auto["adaptation"]["steps_chosen_by"] == "strategy"
    explicit = adapt(c, NAME, steps=3)
    assert explicit["adaptation"]["steps_chosen_by"] == "request"
    assert predict(c, auto["id"]) == predict(c, explicit["id"])
    asked = adapt(c, NAME, steps="auto")
    assert asked["adaptation"]["steps"] == 3 and predict(c, asked["id"]) == predict(c, auto["id"])
    # the default is not the strategy's pick: 10 steps predict otherwise
    assert predict(c, adapt(c, NAME, steps=10)["id"]) != predict(c, auto["id"])
    # a version without a strategy keeps its fixed default, and refuses "auto" by name
    old = adapt(c, f"{NAME}@1.0.0")
    assert old["adaptation"]["steps"] == 10 and old["adaptation"]["steps_chosen_by"] == "default"
    refused = c.post("/v1/adapted-models", json={"meta_learner": f"{NAME}@1.0.0", "support": SUPPORT,
                                                 "options": {"steps": "auto"}})
    assert refused.status_code == 422 and refused.headers["content-type"] == PROBLEM
    assert "no step-strategy model" in refused.json()["detail"]
    assert f"{NAME}@1.1.0" in refused.json()["detail"]


def test_auto_steps_never_exceed_the_limits(settings, tmp_path):
    models = tmp_path / "models"
    install_with_strategy(models, favoured=20)
    manifest_path = models / NAME / "1.1.0" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["limits"]["max_steps"] = 12  # 20 is a candidate the limit does not allow
    manifest_path.write_text(json.dumps(manifest))
    with TestClient(create_app(settings.model_copy(update={"models_dir": models}))) as c:
        made = adapt(c, NAME)
        assert made["adaptation"]["steps"] == 10  # 20 unaffordable; 1 and 3 not predicted better


@pytest.mark.parametrize("bad", ["AUTO", "fast", -1, 2.5, True])
def test_steps_other_than_a_count_or_auto_are_422(auto_client, bad):
    response = auto_client.post("/v1/adapted-models", json={
        "meta_learner": NAME, "support": SUPPORT, "options": {"steps": bad}})
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM


def test_auto_on_a_learner_without_steps_or_strategy_is_422(client):
    for name in ("sinusoid-hypernet", "sinusoid-neural-process"):
        response = client.post("/v1/adapted-models", json={
            "meta_learner": name, "support": SUPPORT, "options": {"steps": "auto"}})
        assert response.status_code == 422 and "no step-strategy model" in response.json()["detail"]


def test_a_strategy_file_that_does_not_match_its_checksum_refuses_the_version(settings, tmp_path):
    models = tmp_path / "models"
    install_with_strategy(models, favoured=3)
    path = models / NAME / "1.1.0" / "strategy.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    with TestClient(create_app(settings.model_copy(update={"models_dir": models}))) as c:
        described = c.get(f"/v1/meta-learners/{NAME}").json()
        assert described["version"] == "1.0.0"  # 1.1.0 refused, 1.0.0 serves
        assert c.get(f"/v1/meta-learners/{NAME}@1.1.0").status_code == 404


def test_auto_carries_on_from_the_step_taken_while_choosing(auto_client):
    """The strategy reads the task after one inner step; the adaptation takes the remaining
    steps from there instead of starting over."""
    c = auto_client
    reg = c.app.state.engine.registry.resolve(f"{NAME}@1.1.0")
    calls = []
    carry_on = reg.learner.adapt_from

    def counted(state, x, y, ways, steps):
        calls.append(steps)
        return carry_on(state, x, y, ways, steps)

    reg.learner.adapt_from = counted
    try:
        auto = adapt(c, NAME)
    finally:
        del reg.learner.adapt_from
    assert auto["adaptation"]["steps"] == 3 and calls == [2]
    assert predict(c, auto["id"]) == predict(c, adapt(c, NAME, steps=3)["id"])
