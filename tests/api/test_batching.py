"""Micro-batched adaptation and prediction give each request the unbatched result."""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from app.main import create_app


def support(i: int) -> dict:
    xs = [[-4.0 + 0.37 * i], [-2.0], [0.0], [1.5], [3.0 - 0.1 * i]]
    return {"inputs": xs, "targets": [(1 + i / 7) * math.sin(x[0] - 0.2 * i) for x in xs]}


@pytest.mark.parametrize("name", ["sinusoid-maml", "sinusoid-hypernet"])
def test_batched_results_equal_unbatched(settings, name):
    n = 16
    results = {}
    for mode in ("off", "on"):
        s = settings.model_copy(update={"batching": mode, "max_batch": 8, "max_wait_ms": 50.0,
                                        "workers": 2, "max_queue": 64})
        # every prediction is sent once every adaptation is done: they arrive together whatever
        # the order in which the adaptation batches finish
        adapted = threading.Barrier(n, timeout=120)
        with TestClient(create_app(s)) as c:
            def one(i: int, c=c, adapted=adapted) -> tuple:
                made = c.post("/v1/adapted-models", json={"meta_learner": name, "support": support(i)})
                assert made.status_code == 201, made.text
                adapted.wait()
                p = c.post(f"/v1/adapted-models/{made.json()['id']}/predictions",
                           json={"inputs": [[-1.0], [0.5], [2.0]]})
                return made.json()["adaptation"]["support_loss_after"], p.json()["predictions"]

            with ThreadPoolExecutor(n) as pool:
                results[mode] = list(pool.map(one, range(n)))
            engine = c.app.state.engine
            if mode == "on":
                assert engine.adapt_batcher.items == n and engine.adapt_batcher.batches < n
                assert engine.predict_batcher.batches < engine.predict_batcher.items
    for (loss_off, pred_off), (loss_on, pred_on) in zip(results["off"], results["on"], strict=True):
        assert loss_on == pytest.approx(loss_off, rel=1e-4, abs=1e-6)
        assert pred_on == pytest.approx(pred_off, rel=1e-4, abs=1e-5)


def test_auto_policy_does_not_vmap_per_task_convolutions_on_cpu(client):
    engine = client.app.state.engine
    batched = {ref.split("@")[0]: on for ref, on in engine.batched.items()}
    assert batched["sinusoid-maml"] and batched["omniglot-protonet"] and batched["omniglot-anil"]
    assert not batched["omniglot-maml"] and not batched["omniglot-reptile"]
    # operators see the choice per kind and version
    metrics = client.get("/metrics").text
    assert 'metaserve_batching{kind="adapt",meta_learner="sinusoid-maml@1.0.0"} 1.0' in metrics
    assert 'metaserve_batching{kind="predict",meta_learner="omniglot-maml@1.1.0"} 0.0' in metrics


def test_auto_policy_stops_batching_a_learner_whose_batches_cost_more_per_task(client):
    """The choice follows the compute times the engine records (here fed directly: batches of
    four at 165 ms a task against 30 ms alone, as measured on the H200 machine)."""
    engine = client.app.state.engine
    key = ("adapt", "sinusoid-maml@1.0.0")
    for _ in range(engine.batch_choice.min_samples):
        engine.batch_choice.record(key, 1, 0.030)
        assert engine.batched["sinusoid-maml@1.0.0"]
        changed = engine.batch_choice.record(key, 4, 0.660)
    assert changed and not engine.batched["sinusoid-maml@1.0.0"]
    engine._gauge_batching()
    assert ('metaserve_batching{kind="adapt",meta_learner="sinusoid-maml@1.0.0"} 0.0'
            in client.get("/metrics").text)
    # and a request still adapts, unbatched
    made = client.post("/v1/adapted-models", json={"meta_learner": "sinusoid-maml@1.0.0",
                                                   "support": {"inputs": [[0.0], [1.0]], "targets": [0.0, 0.8]}})
    assert made.status_code == 201, made.text
    assert engine.adapt_batcher.items == 0
