"""No database connection is held while a model adapts or predicts."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from app.api.auth.service import create_key
from app.main import create_app
from tests.api.helpers import sine_support

SLOW_SECONDS = 0.25


def test_sixteen_slow_adaptations_share_a_pool_of_two(settings):
    """Pool of 2 (no overflow, 1 s timeout), 16 concurrent adaptations that each compute for
    0.25 s on 2 workers (about 2 s in all), each followed by a prediction that computes for
    0.25 s: a request that kept its connection through the computation would starve the
    others past the pool timeout."""
    s = settings.model_copy(update={"db_pool_size": 2, "db_max_overflow": 0, "db_pool_timeout": 1.0,
                                    "workers": 2, "max_queue": 64, "batching": "off",
                                    "auth_enabled": True, "rate_limit_per_minute": 0})
    with TestClient(create_app(s)) as c:
        with c.app.state.session_factory() as session:
            _, key = create_key(session=session, tenant="pool")
        headers = {"Authorization": f"Bearer {key}"}
        engine = c.app.state.engine
        for executor in (engine.executor, engine.predict_executor):
            def slow_run(fn, tenant="", run=executor.run, **options):
                def slow():
                    time.sleep(SLOW_SECONDS)
                    return fn()
                return run(slow, tenant=tenant, **options)

            executor.run = slow_run

        def one(i: int) -> tuple[int, int]:
            made = c.post("/v1/adapted-models", headers=headers,
                          json={"meta_learner": "sinusoid-maml", "support": sine_support(1 + i / 8)})
            if made.status_code != 201:
                return made.status_code, 0
            p = c.post(f"/v1/adapted-models/{made.json()['id']}/predictions", headers=headers,
                       json={"inputs": [[0.5]]})
            return made.status_code, p.status_code

        t0 = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(one, range(16)))
        elapsed = time.monotonic() - t0
        assert results == [(201, 200)] * 16, results
        assert elapsed > 16 * SLOW_SECONDS / 2  # the computations really overlapped the pool
        pool_status = c.app.state.session_factory.kw["bind"].pool.status()
        assert "Current Checked out connections: 0" in pool_status
