"""One tenant's heavy adaptation does not stall another tenant's small prediction."""

from __future__ import annotations

import statistics
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api.auth.service import create_key
from app.main import create_app
from tests.api.helpers import sine_support

pytestmark = pytest.mark.slow


def heavy_support(ways: int = 20, shots: int = 10) -> dict:
    rng = np.random.default_rng(0)
    inputs = [(rng.random((28, 28)) < 0.1).astype(float).tolist() for _ in range(ways * shots)]
    return {"inputs": inputs, "targets": [f"c{i // shots}" for i in range(ways * shots)]}


def test_a_small_prediction_answers_while_a_heavy_adaptation_runs(settings):
    s = settings.model_copy(update={"auth_enabled": True, "rate_limit_per_minute": 0,
                                    "workers": 2, "max_body_bytes": 8_000_000})
    with TestClient(create_app(s)) as c:
        with c.app.state.session_factory() as session:
            _, heavy_key = create_key(session=session, tenant="heavy")
            _, light_key = create_key(session=session, tenant="light")
        heavy = {"Authorization": f"Bearer {heavy_key}"}
        light = {"Authorization": f"Bearer {light_key}"}
        model = c.post("/v1/adapted-models", headers=light,
                       json={"meta_learner": "sinusoid-maml", "support": sine_support()}).json()["id"]
        done = threading.Event()
        statuses = []

        def adapt_heavy() -> None:
            r = c.post("/v1/adapted-models", headers=heavy, json={
                "meta_learner": "omniglot-maml", "support": heavy_support(), "options": {"steps": 20}})
            statuses.append(r.status_code)
            if len(statuses) == 2:
                done.set()

        threads = [threading.Thread(target=adapt_heavy) for _ in range(2)]  # both workers busy
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # the heavy jobs are running
        latencies = []
        while not done.is_set() and len(latencies) < 40:
            t0 = time.monotonic()
            r = c.post(f"/v1/adapted-models/{model}/predictions", headers=light, json={"inputs": [[0.5]]})
            latencies.append(time.monotonic() - t0)
            assert r.status_code == 200
            time.sleep(0.05)
        in_flight = not done.is_set()
        for thread in threads:
            thread.join()
        assert statuses == [201, 201] and in_flight, statuses  # the heavy jobs outlived the probe
        assert len(latencies) >= 10
        assert statistics.median(latencies) < 0.25 and max(latencies) < 1.0, latencies


def test_a_tenant_over_its_concurrent_adaptations_gets_429(settings):
    s = settings.model_copy(update={"max_adaptations_per_tenant": 1, "batching": "off"})
    with TestClient(create_app(s)) as c:
        engine = c.app.state.engine
        run = engine.executor.run
        started, release = threading.Event(), threading.Event()

        def held(fn, tenant="", **options):
            def wait_then():
                started.set()
                release.wait(10)
                return fn()
            return run(wait_then, tenant=tenant, **options)

        engine.executor.run = held
        first = {}
        thread = threading.Thread(target=lambda: first.update(r=c.post(
            "/v1/adapted-models", json={"meta_learner": "sinusoid-maml", "support": sine_support()})))
        thread.start()
        assert started.wait(10)
        second = c.post("/v1/adapted-models", json={"meta_learner": "sinusoid-maml",
                                                    "support": sine_support(3.0)})
        release.set()
        thread.join()
        assert second.status_code == 429 and second.json()["type"].endswith("too-many-in-progress")
        assert int(second.headers["retry-after"]) >= 1
        assert first["r"].status_code == 201


def test_an_adaptation_over_the_work_budget_is_refused_before_it_starts(client):
    r = client.post("/v1/adapted-models", json={
        "meta_learner": "omniglot-maml", "support": heavy_support(50, 10), "options": {"steps": 50}})
    assert r.status_code == 422 and "example-steps" in r.json()["detail"]
    assert "10000" in r.json()["detail"]


def test_the_work_queue_is_the_real_bound_and_health_answers_under_load(settings):
    import anyio.to_thread

    s = settings.model_copy(update={"workers": 1, "max_queue": 3, "batching": "off"})
    with TestClient(create_app(s)) as c:
        assert c.portal.call(lambda: anyio.to_thread.current_default_thread_limiter().total_tokens) \
            > 2 * s.max_queue
        engine = c.app.state.engine
        run = engine.executor.run

        def slow(fn, tenant="", **options):
            def wait_then():
                time.sleep(0.3)
                return fn()
            return run(wait_then, tenant=tenant, **options)

        engine.executor.run = slow
        codes, health = [], []

        def one(i: int) -> None:
            r = c.post("/v1/adapted-models", json={"meta_learner": "sinusoid-maml",
                                                   "support": sine_support(1 + i / 10)})
            codes.append((r.status_code, r.headers.get("retry-after")))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(10)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        for _ in range(5):
            t0 = time.monotonic()
            assert c.get("/healthz").status_code == 200
            health.append(time.monotonic() - t0)
        for t in threads:
            t.join()
        refused = [retry for code, retry in codes if code == 503]
        assert refused and all(int(retry) >= 1 for retry in refused), codes
        assert sum(code == 201 for code, _ in codes) >= s.max_queue
        assert max(health) < 0.5, health


def test_one_client_cannot_hold_more_than_its_share_of_requests(settings):
    s = settings.model_copy(update={"max_requests_per_client": 2, "batching": "off", "workers": 1})
    with TestClient(create_app(s)) as c:
        engine = c.app.state.engine
        run = engine.executor.run
        release = threading.Event()

        def held(fn, tenant="", **options):
            def wait_then():
                release.wait(10)
                return fn()
            return run(wait_then, tenant=tenant, **options)

        engine.executor.run = held
        codes = []
        threads = [threading.Thread(target=lambda i=i: codes.append(c.post(
            "/v1/adapted-models", json={"meta_learner": "sinusoid-maml",
                                        "support": sine_support(1 + i / 10)}).status_code))
                   for i in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        third = c.post("/v1/adapted-models", json={"meta_learner": "sinusoid-maml", "support": sine_support()})
        assert c.get("/healthz").status_code == 200  # not counted
        release.set()
        for t in threads:
            t.join()
        assert third.status_code == 429 and third.headers["retry-after"] == "1"
        assert third.json()["type"].endswith("too-many-requests-in-progress")
        assert sorted(codes) == [201, 201]
        assert c.post("/v1/adapted-models", json={"meta_learner": "sinusoid-maml",
                                                  "support": sine_support()}).status_code == 201
