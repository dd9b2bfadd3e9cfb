"""Rate limits shared by replicas: two application instances counting in one Redis give a key
its rate once, not once per replica."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

from app.api.auth.rate_limit import RateLimiter, SharedRateLimiter, make_rate_limiter
from app.main import create_app
from tests.api.test_tenancy_and_reliability import auth, keys

REDIS = "redis://127.0.0.1:6379"


def test_two_replicas_share_one_limit(settings):
    shared = settings.model_copy(update={"auth_enabled": True, "rate_limit_per_minute": 3,
                                         "rate_limit_storage": REDIS})
    with TestClient(create_app(shared)) as one, TestClient(create_app(shared)) as two:
        ((_, secret),) = keys(one, f"tenant-{uuid.uuid4().hex[:8]}")
        answers = [client.get("/v1/meta-learners", headers=auth(secret)) for client in (one, two, one, two)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert int(answers[-1].headers["Retry-After"]) >= 1
        assert answers[-1].json()["type"].endswith("rate-limited")


def test_memory_storage_stays_per_process():
    assert isinstance(make_rate_limiter(10, "memory", "keys"), RateLimiter)
    assert isinstance(make_rate_limiter(10, REDIS, "keys"), SharedRateLimiter)
    limiter = make_rate_limiter(2, REDIS, f"test-{uuid.uuid4().hex[:8]}")
    assert [limiter.acquire("k") == 0 for _ in range(3)] == [True, True, False]
