"""Adaptations as jobs over HTTP: 202 -> queued -> running -> ready | failed, predictions on a
model that is not ready (409), a job that outlives the process that accepted it."""

from __future__ import annotations

import time
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update

from app.core.errors import InvalidSupportSet
from app.db.models import AdaptationJobRow, AdaptedModelRow
from app.jobs import queue
from app.lifecycle import now_utc
from app.main import create_app
from tests.api.helpers import sine_support
from tests.api.test_errors import check_problem
from tests.api.test_tenancy_and_reliability import auth, keys

ASYNC = {"Prefer": "respond-async"}
BODY = {"meta_learner": "sinusoid-maml", "support": sine_support(), "options": {"steps": 5}}


def wait_for(client, ident, statuses=("ready", "failed"), timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/v1/adapted-models/{ident}").json()
        if body["status"] in statuses:
            return body
        time.sleep(0.05)
    raise AssertionError(f"still {body['status']} after {timeout}s")


def test_respond_async_answers_202_then_ready_with_the_same_predictions(client):
    made = client.post("/v1/adapted-models", json=BODY, headers=ASYNC)
    assert made.status_code == 202, made.text
    body = made.json()
    assert body["status"] in ("queued", "running") and body["adaptation"] is None
    assert made.headers["Location"] == f"/v1/adapted-models/{body['id']}"
    assert made.headers["Preference-Applied"] == "respond-async"
    ready = wait_for(client, body["id"])
    assert ready["status"] == "ready" and ready["progress"] == 1.0 and ready["error"] is None
    assert ready["adaptation"]["steps"] == 5
    sync = client.post("/v1/adapted-models", json=BODY)
    assert sync.status_code == 201 and sync.json()["status"] == "ready"
    queries = {"inputs": [[-1.0], [0.5], [2.0]]}
    by_job = client.post(f"/v1/adapted-models/{body['id']}/predictions", json=queries).json()
    direct = client.post(f"/v1/adapted-models/{sync.json()['id']}/predictions", json=queries).json()
    assert by_job == direct


def test_each_job_gives_the_heap_it_freed_back_afterwards(client, monkeypatch):
    """A job's tensors can leave hundreds of MB in the C heap: the job thread trims it after
    every job, the ones that fail included (never in the request path)."""
    from app.jobs import adaptation

    calls = []
    monkeypatch.setattr(adaptation, "release_free_heap", lambda: calls.append(time.monotonic()))
    ready = client.post("/v1/adapted-models", json=BODY, headers=ASYNC).json()["id"]
    assert wait_for(client, ready)["status"] == "ready" and len(calls) == 1
    assert client.post("/v1/adapted-models", json=BODY).status_code == 201 and len(calls) == 1

    def overflowing(*args, **kwargs):
        raise InvalidSupportSet("adapting to it overflowed")

    monkeypatch.setattr(client.app.state.engine, "adapt", overflowing)
    failed = client.post("/v1/adapted-models", json=BODY, headers=ASYNC).json()["id"]
    assert wait_for(client, failed)["status"] == "failed" and len(calls) == 2


def test_jobs_compute_with_the_job_thread_count_and_requests_with_the_pools(settings, monkeypatch):
    """METASERVE_JOB_TORCH_THREADS: a job thread adapts with its own intra-op thread count; a
    synchronous adaptation in the same process keeps the request pool's."""
    import torch

    from app.meta.algorithms.maml import MAML

    seen = []
    adapt_params = MAML.adapt_params

    def recording(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return adapt_params(self, *args, **kwargs)

    monkeypatch.setattr(MAML, "adapt_params", recording)
    threads = {"job_torch_threads": 2, "torch_threads": 1}
    with TestClient(create_app(settings.model_copy(update=threads))) as client:
        job = client.post("/v1/adapted-models", json=BODY, headers=ASYNC).json()["id"]
        assert wait_for(client, job)["status"] == "ready" and seen == [2]
        assert client.post("/v1/adapted-models", json=BODY).status_code == 201 and seen == [2, 1]


def test_invalid_request_is_refused_before_it_is_queued(client):
    bad = dict(BODY, support={"inputs": [[0.0], [1.0]], "targets": [1.0]})
    check_problem(client.post("/v1/adapted-models", json=bad, headers=ASYNC), 422, "support")
    assert client.get("/v1/adapted-models").json()["items"] == []


def pending_app(settings):
    """A server whose job threads are off: jobs stay queued until a runner takes them."""
    return TestClient(create_app(settings.model_copy(update={"job_threads": 0})))


def test_predict_before_ready_is_409_and_delete_drops_the_job(settings):
    with pending_app(settings) as client:
        made = client.post("/v1/adapted-models", json=BODY, headers=ASYNC)
        ident = made.json()["id"]
        assert client.get(f"/v1/adapted-models/{ident}").json()["status"] == "queued"
        r = client.post(f"/v1/adapted-models/{ident}/predictions", json={"inputs": [[0.0]]})
        check_problem(r, 409, "queued")
        assert r.json()["adapted_model_status"] == "queued" and r.headers["Retry-After"] == "1"
        listed = client.get("/v1/adapted-models").json()["items"]
        assert [(m["id"], m["status"]) for m in listed] == [(ident, "queued")]
        assert client.delete(f"/v1/adapted-models/{ident}").status_code == 204
        with client.app.state.session_factory() as session:
            assert session.get(AdaptationJobRow, ident) is None


def test_idempotent_replay_of_a_queued_model(settings):
    with pending_app(settings) as client:
        key = {"Idempotency-Key": "job-1", **ASYNC}
        first = client.post("/v1/adapted-models", json=BODY, headers=key)
        again = client.post("/v1/adapted-models", json=BODY, headers=key)
        assert first.status_code == again.status_code == 202
        assert again.json()["id"] == first.json()["id"]
        assert again.headers["Idempotent-Replayed"] == "true"


def test_job_fails_with_a_problem_body_and_predictions_say_why(settings):
    with pending_app(settings) as client:
        ident = client.post("/v1/adapted-models", json=BODY, headers=ASYNC).json()["id"]
        with client.app.state.session_factory() as session:  # its weights are gone by run time
            session.execute(update(AdaptedModelRow).where(AdaptedModelRow.id == ident)
                            .values(meta_learner_weights_sha256="f" * 64))
            session.commit()
    with TestClient(create_app(settings)) as client:  # a server that runs jobs takes it
        failed = wait_for(client, ident)
        assert failed["status"] == "failed"
        assert failed["error"]["status"] == 410
        assert failed["error"]["instance"] == f"/v1/adapted-models/{ident}"
        r = client.post(f"/v1/adapted-models/{ident}/predictions", json={"inputs": [[0.0]]})
        check_problem(r, 409, "failed to adapt")


def test_job_of_a_dead_server_is_run_after_its_lease_runs_out(settings):
    with pending_app(settings) as client:
        ident = client.post("/v1/adapted-models", json=BODY, headers=ASYNC).json()["id"]
        with client.app.state.session_factory() as session:  # a worker took it, then died
            assert queue.claim(session, ident, "dead-worker", 30) is not None
            session.execute(update(AdaptationJobRow).values(
                lease_expires_at=now_utc() - timedelta(seconds=1)))
            session.commit()
        assert client.get(f"/v1/adapted-models/{ident}").json()["status"] == "running"
    with TestClient(create_app(settings.model_copy(update={"job_poll_seconds": 0.1}))) as client:
        ready = wait_for(client, ident)
        assert ready["status"] == "ready"
        with client.app.state.session_factory() as session:
            assert session.get(AdaptationJobRow, ident) is None
        r = client.post(f"/v1/adapted-models/{ident}/predictions", json={"inputs": [[0.0]]})
        assert r.status_code == 200


def test_another_tenant_cannot_see_a_queued_model(settings):
    authed = settings.model_copy(update={"auth_enabled": True, "job_threads": 0})
    with TestClient(create_app(authed)) as client:
        alice, bob = (auth(secret) for _, secret in keys(client, "alice", "bob"))
        ident = client.post("/v1/adapted-models", json=BODY, headers={**ASYNC, **alice}).json()["id"]
        assert client.get(f"/v1/adapted-models/{ident}", headers=bob).status_code == 404
        assert client.get(f"/v1/adapted-models/{ident}", headers=alice).json()["status"] == "queued"
