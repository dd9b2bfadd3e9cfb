"""Asynchronous jobs are shared fairly between tenants: one tenant's queue of fine-tuning jobs
does not hold back another tenant's job (real worker threads), and a tenant's pending jobs
can be capped (429 with Retry-After)."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.api.test_errors import check_problem
from tests.api.test_tenancy_and_reliability import auth, keys
from tests.api.test_text import SUPPORT

pytestmark = pytest.mark.slow
NAME = "text-protonet-finetune"


def submit(client, key, steps=None):
    body = {"meta_learner": NAME, "support": SUPPORT}
    if steps:
        body["options"] = {"steps": steps}
    r = client.post("/v1/adapted-models", json=body, headers=auth(key))
    assert r.status_code == 202, r.text
    return r.json()["id"]


def statuses(client, key, ids):
    return [client.get(f"/v1/adapted-models/{i}", headers=auth(key)).json()["status"] for i in ids]


def test_another_tenants_job_waits_for_at_most_one_more_job(settings):
    fair = settings.model_copy(update={"auth_enabled": True, "rate_limit_per_minute": 0, "job_threads": 1})
    with TestClient(create_app(fair)) as client:
        (_, key_a), (_, key_b) = keys(client, "tenant-a", "tenant-b")
        a_jobs = [submit(client, key_a, steps=300) for _ in range(10)]
        a_done_before = statuses(client, key_a, a_jobs).count("ready")
        b_job = submit(client, key_b)
        deadline = time.monotonic() + 120
        while statuses(client, key_b, [b_job]) != ["ready"]:
            assert time.monotonic() < deadline, "tenant b's job never ran"
            time.sleep(0.02)
        a_done = statuses(client, key_a, a_jobs).count("ready")
        # the job running when b submitted, and at most one more of a's, before b's
        assert a_done <= a_done_before + 2, (a_done_before, a_done)
        assert a_done < len(a_jobs)


def test_pending_jobs_per_tenant_can_be_capped(settings):
    capped = settings.model_copy(update={"auth_enabled": True, "rate_limit_per_minute": 0,
                                         "job_threads": 0, "max_pending_jobs_per_tenant": 2})
    with TestClient(create_app(capped)) as client:  # no job threads: the jobs stay queued
        (_, key_a), (_, key_b) = keys(client, "tenant-a", "tenant-b")
        submit(client, key_a)
        submit(client, key_a)
        refused = client.post("/v1/adapted-models", json={"meta_learner": NAME, "support": SUPPORT},
                              headers=auth(key_a))
        check_problem(refused, 429, "2 adaptation jobs queued or running")
        assert refused.headers["Retry-After"] == "2"
        assert refused.json()["type"].endswith("too-many-pending-jobs")
        submit(client, key_b)  # the cap is per tenant
        listed = client.get("/v1/adapted-models", headers=auth(key_a)).json()
        assert len(listed["items"]) == 2  # the refused request left nothing behind
