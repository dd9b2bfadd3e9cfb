"""text-protonet-finetune over HTTP: every adaptation is a job (202 -> ready), its predictions
match the engine's direct adaptation, and a job whose server is killed mid-run (SIGKILL) is
run again by the next server."""

from __future__ import annotations

import signal
import time
import uuid

import httpx
import pytest

from tests.api.test_async_adaptation import wait_for
from tests.api.test_text import SUPPORT
from tests.live_server import Server

pytestmark = pytest.mark.slow
NAME = "text-protonet-finetune"
QUERIES = ["the password reset link does not work", "the package is late", "please give me a refund"]


def test_finetune_is_a_job_and_predicts(client):
    made = client.post("/v1/adapted-models", json={"meta_learner": NAME, "support": SUPPORT})
    assert made.status_code == 202, made.text
    assert made.json()["status"] in ("queued", "running")
    ready = wait_for(client, made.json()["id"], timeout=60)
    assert ready["status"] == "ready" and ready["adaptation"]["steps"] == 50
    r = client.post(f"/v1/adapted-models/{ready['id']}/predictions", json={"inputs": QUERIES})
    assert [p["label"] for p in r.json()["predictions"]] == ["login", "shipping", "refund"]
    # the same support set adapts to the same state (the pseudo-episodes are seeded by it)
    again = wait_for(client, client.post("/v1/adapted-models", json={
        "meta_learner": NAME, "support": SUPPORT}).json()["id"], timeout=60)
    r2 = client.post(f"/v1/adapted-models/{again['id']}/predictions", json={"inputs": QUERIES})
    assert r2.json() == r.json()


def test_sentences_embedded_earlier_in_other_batches_do_not_change_the_model(client):
    """The pseudo-episodes are seeded by the support's embedding bits, and a sentence embedded
    alone (an earlier prediction) differs from one embedded with the others in its last bits:
    the job embeds its support afresh, so the model is the one an empty cache gives."""
    from app.meta.codec_registry import codec_for
    from app.meta.embedding_cache import EmbeddingCache

    tag = uuid.uuid4().hex[:6]  # sentences this process has not embedded yet
    support = {"inputs": [f"{s} ({tag})" for s in SUPPORT["inputs"]], "targets": SUPPORT["targets"]}

    def job_predictions() -> dict:
        made = client.post("/v1/adapted-models", json={"meta_learner": NAME, "support": support})
        ready = wait_for(client, made.json()["id"], timeout=60)
        return client.post(f"/v1/adapted-models/{ready['id']}/predictions", json={"inputs": QUERIES}).json()

    reference = job_predictions()
    codec = codec_for("text")
    codec.cache = EmbeddingCache(codec.cache.max_bytes)  # forget them, then embed two alone
    plain = client.post("/v1/adapted-models", json={"meta_learner": "text-protonet@1.0.0", "support": SUPPORT})
    for sentence in (support["inputs"][0], support["inputs"][4]):
        assert client.post(f"/v1/adapted-models/{plain.json()['id']}/predictions",
                           json={"inputs": [sentence]}).status_code == 200
    assert job_predictions() == reference


def test_finetune_refuses_a_bad_support_set_at_once(client):
    bad = {"inputs": SUPPORT["inputs"][:-1] + [""], "targets": SUPPORT["targets"]}
    r = client.post("/v1/adapted-models", json={"meta_learner": NAME, "support": bad})
    assert r.status_code == 422 and "empty" in r.json()["detail"]


def test_job_survives_sigkill_of_its_server(tmp_path, database_url):
    from app.db.migrate import upgrade

    upgrade(database_url)
    server = Server(database_url, tmp_path / "var", METASERVE_AUTH_ENABLED="false",
                    METASERVE_WARM_UP="false", METASERVE_JOB_LEASE_SECONDS="2",
                    METASERVE_JOB_POLL_SECONDS="0.2", METASERVE_LOG_LEVEL="warning")
    url = server.url
    server.start(timeout=90)
    try:
        # a long fine-tune: 500 steps over 9 sentences (seconds), killed while it runs
        made = httpx.post(f"{url}/v1/adapted-models", timeout=60, json={
            "meta_learner": NAME, "support": SUPPORT, "options": {"steps": 500}})
        assert made.status_code == 202, made.text
        ident = made.json()["id"]
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/v1/adapted-models/{ident}").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        server.stop(signal.SIGKILL)
    server.start(timeout=90)  # the same database, store and port
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            ready = wait_for(client, ident, timeout=90)
            assert ready["status"] == "ready", ready
            r = client.post(f"/v1/adapted-models/{ident}/predictions", json={"inputs": QUERIES})
            assert r.status_code == 200
            assert [p["label"] for p in r.json()["predictions"]] == ["login", "shipping", "refund"]
    finally:
        server.stop()


def test_encoder_finetune_is_a_deterministic_job(client):
    """text-encoder-finetune fine-tunes the encoder's top layers per task: a job with progress,
    the same support set gives the same predictions, the state holds the fine-tuned layers."""
    described = client.get("/v1/meta-learners/text-encoder-finetune").json()
    assert described["input"]["codec"] == "text-tokens"
    made = client.post("/v1/adapted-models", json={"meta_learner": "text-encoder-finetune", "support": SUPPORT})
    assert made.status_code == 202, made.text
    ready = wait_for(client, made.json()["id"], timeout=120)
    assert ready["status"] == "ready" and ready["adaptation"]["steps"] == described["adaptation_defaults"]["steps"]
    r = client.post(f"/v1/adapted-models/{ready['id']}/predictions", json={"inputs": QUERIES})
    assert r.status_code == 200
    assert [p["label"] for p in r.json()["predictions"]] == ["login", "shipping", "refund"]
    again = wait_for(client, client.post("/v1/adapted-models", json={
        "meta_learner": "text-encoder-finetune", "support": SUPPORT}).json()["id"], timeout=120)
    r2 = client.post(f"/v1/adapted-models/{again['id']}/predictions", json={"inputs": QUERIES})
    assert r2.json() == r.json()
    bad = client.post("/v1/adapted-models", json={"meta_learner": "text-encoder-finetune", "support": {
        "inputs": SUPPORT["inputs"][:-1] + ["   "], "targets": SUPPORT["targets"]}})
    assert bad.status_code == 422 and "empty" in bad.json()["detail"]


def test_encoder_finetune_steps_scale_with_the_classes_of_the_task(client):
    """text-encoder-finetune-mpnet describes the rule that scales its default steps with a task's
    classes, and a 3-intent job left at the default takes the rule's steps, not the most."""
    described = client.get("/v1/meta-learners/text-encoder-finetune-mpnet")
    if described.status_code != 200:
        pytest.skip("all-mpnet-base-v2's packages are not installed here")
    defaults = described.json()["adaptation_defaults"]
    assert defaults["steps"] == 80 and defaults["steps_by_classes"].startswith("min(80, ceil(20 x classes")
    name = "text-encoder-finetune-mpnet"
    made = client.post("/v1/adapted-models", json={"meta_learner": name, "support": SUPPORT})
    assert made.status_code == 202, made.text
    ready = wait_for(client, made.json()["id"], timeout=300)
    assert ready["status"] == "ready", ready
    assert ready["adaptation"]["steps"] == 20 and ready["adaptation"]["steps_chosen_by"] == "default"
    asked = client.post("/v1/adapted-models", json={"meta_learner": name, "support": SUPPORT,
                                                    "options": {"steps": 2}})
    assert wait_for(client, asked.json()["id"], timeout=300)["adaptation"]["steps"] == 2
