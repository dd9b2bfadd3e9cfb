"""API keys and tenants, rate limits, idempotency, expiry sweep, reconciliation."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from app.api.auth.service import create_key, revoke_key
from app.api.auth.verified_keys import VerifiedKeys
from app.db.models import AdaptedModelRow, TenantUsageRow
from app.main import create_app
from app.storage.artifacts import LocalArtifactStore
from tests.api.helpers import sine_support

PROBLEM = "application/problem+json"


@pytest.fixture
def secured(settings):
    s = settings.model_copy(update={"auth_enabled": True, "rate_limit_per_minute": 0})
    with TestClient(create_app(s)) as c:
        yield c


def keys(client, *tenants):
    with client.app.state.session_factory() as session:
        return [create_key(session=session, tenant=t) for t in tenants]


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def adapt(client, headers=None, **extra):
    body = {"meta_learner": "sinusoid-hypernet", "support": sine_support(), **extra}
    return client.post("/v1/adapted-models", json=body, headers=headers or {})


def test_tenants_cannot_see_each_others_models(secured):
    (_, a), (_, b) = keys(secured, "tenant-a", "tenant-b")
    ident = adapt(secured, auth(a)).json()["id"]
    assert secured.get(f"/v1/adapted-models/{ident}", headers=auth(a)).status_code == 200
    for r in (secured.get(f"/v1/adapted-models/{ident}", headers=auth(b)),
              secured.post(f"/v1/adapted-models/{ident}/predictions", json={"inputs": [[0.0]]},
                           headers=auth(b)),
              secured.delete(f"/v1/adapted-models/{ident}", headers=auth(b))):
        assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    assert secured.get("/v1/adapted-models", headers=auth(b)).json()["items"] == []
    assert [m["id"] for m in secured.get("/v1/adapted-models", headers=auth(a)).json()["items"]] == [ident]
    assert secured.get(f"/v1/adapted-models/{ident}", headers=auth(a)).status_code == 200


def test_every_v1_operation_is_authenticated(secured):
    """Authenticated by default: each /v1 operation the app serves (the single-call create and
    predict routes included) answers 401 without a key, before it looks at anything else."""
    ident = "0123456789abcdef0123456789abcdef"
    paths = secured.get("/openapi.json").json()["paths"]
    operations = [(method.upper(), path.replace("{adapted_model_id}", ident).replace("{name}", "sinusoid-maml"))
                  for path, item in paths.items() if path.startswith("/v1") for method in item]
    assert len(operations) >= 9
    for method, path in operations:
        r = secured.request(method, path, json={"inputs": [[0.0]]}, params={"inputs": "[[0.0]]"})
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.headers["content-type"] == PROBLEM and r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nonsense", "Basic abc",
                                    "Bearer ms_0000000000000000_wrong"])
def test_missing_and_malformed_keys_get_401(secured, header):
    headers = {"Authorization": header} if header else {}
    for r in (secured.get("/v1/meta-learners", headers=headers), adapt(secured, headers)):
        assert r.status_code == 401 and r.headers["content-type"] == PROBLEM
        assert r.headers["www-authenticate"] == "Bearer"


def test_revoked_key_gets_401_at_once_without_the_key_cache(settings):
    s = settings.model_copy(update={"auth_enabled": True, "rate_limit_per_minute": 0, "auth_cache_seconds": 0})
    with TestClient(create_app(s)) as c:
        ((key_id, key),) = keys(c, "tenant-a")
        assert c.get("/v1/meta-learners", headers=auth(key)).status_code == 200
        with c.app.state.session_factory() as session:
            assert revoke_key(session=session, key_id=key_id)
        assert c.get("/v1/meta-learners", headers=auth(key)).status_code == 401


def test_revoked_key_gets_401_once_the_cache_window_has_passed(secured):
    """A process trusts a key it verified for METASERVE_AUTH_CACHE_SECONDS, on every route
    (the lean create and predict included); then it reads the database again."""
    now = [1000.0]
    secured.app.state.verified_keys = VerifiedKeys(5.0, clock=lambda: now[0])
    ((key_id, key),) = keys(secured, "tenant-a")
    ident = adapt(secured, auth(key)).json()["id"]
    with secured.app.state.session_factory() as session:
        assert revoke_key(session=session, key_id=key_id)
    now[0] += 4.9
    predict = f"/v1/adapted-models/{ident}/predictions"
    assert secured.post(predict, json={"inputs": [[0.0]]}, headers=auth(key)).status_code == 200
    assert secured.get("/v1/meta-learners", headers=auth(key)).status_code == 200
    now[0] += 0.1
    for r in (secured.post(predict, json={"inputs": [[0.0]]}, headers=auth(key)),
              adapt(secured, auth(key)), secured.get("/v1/meta-learners", headers=auth(key))):
        assert r.status_code == 401 and r.headers["content-type"] == PROBLEM


def test_a_trusted_key_id_with_another_secret_gets_401(secured):
    ((key_id, key),) = keys(secured, "tenant-a")
    assert secured.get("/v1/meta-learners", headers=auth(key)).status_code == 200
    assert len(secured.app.state.verified_keys) == 1
    forged = f"ms_{key_id}_{'x' * 43}"
    for r in (secured.get("/v1/meta-learners", headers=auth(forged)), adapt(secured, auth(forged))):
        assert r.status_code == 401 and r.headers["content-type"] == PROBLEM


def test_health_endpoints_need_no_key(secured):
    assert secured.get("/healthz").status_code == 200
    assert secured.get("/readyz").status_code == 200


def test_rate_limit_answers_429_with_retry_after(settings):
    s = settings.model_copy(update={"auth_enabled": True, "rate_limit_per_minute": 6})
    with TestClient(create_app(s)) as c:
        ((_, key),) = keys(c, "tenant-a")
        codes = [c.get("/v1/meta-learners", headers=auth(key)).status_code for _ in range(3)]
        assert codes[0] == 200 and codes[-1] == 429
        r = c.get("/v1/meta-learners", headers=auth(key))
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.headers["content-type"] == PROBLEM


def test_idempotency_key_replays_and_conflicts(client):
    h = {"Idempotency-Key": "order-42"}
    first = adapt(client, h)
    again = adapt(client, h)
    assert first.status_code == 201 and again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    other = client.post("/v1/adapted-models", headers=h, json={
        "meta_learner": "sinusoid-maml", "support": sine_support()})
    assert other.status_code == 409 and other.headers["content-type"] == PROBLEM
    assert len(client.get("/v1/adapted-models").json()["items"]) == 1


def test_quota_per_tenant(settings):
    s = settings.model_copy(update={"auth_enabled": False, "max_models_per_tenant": 2})
    with TestClient(create_app(s)) as c:
        assert adapt(c).status_code == 201 and adapt(c).status_code == 201
        r = adapt(c)
        assert r.status_code == 409 and "maximum is 2" in r.json()["detail"]


def usage(client, tenant: str = "default") -> int | None:
    with client.app.state.session_factory() as session:
        row = session.get(TenantUsageRow, tenant)
        return None if row is None else row.models


def test_rows_counter_follows_creates_deletes_and_sweeps(settings):
    s = settings.model_copy(update={"auth_enabled": False, "sweep_interval_seconds": 0.2,
                                    "orphan_grace_seconds": 0})
    with TestClient(create_app(s)) as c:
        ids = [adapt(c).json()["id"] for _ in range(3)]
        assert usage(c) == 3
        assert c.delete(f"/v1/adapted-models/{ids[0]}").status_code == 204
        assert usage(c) == 2
        with c.app.state.session_factory() as session:  # one expires: the sweep removes it
            session.execute(update(AdaptedModelRow).where(AdaptedModelRow.id == ids[1]).values(
                expires_at=datetime.now(UTC) - timedelta(seconds=1)))
            session.commit()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and usage(c) != 1:
            time.sleep(0.1)
        assert usage(c) == 1


def test_expired_rows_not_yet_swept_do_not_count_against_the_quota(settings):
    """The counter includes them (it is an upper bound); at the quota the exact count decides."""
    s = settings.model_copy(update={"auth_enabled": False, "max_models_per_tenant": 2,
                                    "sweep_interval_seconds": 0})
    with TestClient(create_app(s)) as c:
        assert adapt(c).status_code == 201 and adapt(c).status_code == 201
        with c.app.state.session_factory() as session:
            session.execute(update(AdaptedModelRow).values(
                expires_at=datetime.now(UTC) - timedelta(seconds=1)))
            session.commit()
        assert usage(c) == 2
        assert adapt(c).status_code == 201 and usage(c) == 3  # 0 live before it
        assert adapt(c).status_code == 201  # 1 live
        r = adapt(c)
        assert r.status_code == 409 and "holds 2 adapted models" in r.json()["detail"]
        assert usage(c) == 4  # the refused one's claim was rolled back


def test_expiry_sweep_removes_rows_and_artifacts(settings):
    s = settings.model_copy(update={"sweep_interval_seconds": 0.2, "orphan_grace_seconds": 0,
                                    "inline_state_bytes": 0})  # states as files
    with TestClient(create_app(s)) as c:
        ident = adapt(c).json()["id"]
        assert list(s.artifacts_dir.glob("*/*.safetensors"))
        with c.app.state.session_factory() as session:
            session.execute(update(AdaptedModelRow).values(
                expires_at=datetime.now(UTC) - timedelta(seconds=1)))
            session.commit()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and list(s.artifacts_dir.glob("*/*.safetensors")):
            time.sleep(0.1)
        assert not list(s.artifacts_dir.glob("*/*.safetensors"))
        with c.app.state.session_factory() as session:
            assert session.get(AdaptedModelRow, ident) is None


def test_startup_collects_orphans_keeps_rows_and_refuses_corrupt_artifacts(settings):
    s = settings.model_copy(update={"orphan_grace_seconds": 0, "inline_state_bytes": 0})
    with TestClient(create_app(s)) as c:
        kept = adapt(c).json()["id"]
        vanished = c.post("/v1/adapted-models", json={
            "meta_learner": "sinusoid-maml", "support": sine_support(amplitude=3.0)}).json()["id"]
        with c.app.state.session_factory() as session:
            vanished_sha = session.get(AdaptedModelRow, vanished).artifact_sha256
            kept_sha = session.get(AdaptedModelRow, kept).artifact_sha256
    store = LocalArtifactStore(s.artifacts_dir)
    orphan = store.put(b"an artifact whose row was never committed")
    store.delete(vanished_sha)  # a row whose artifact is not in this store
    (store.root / "ab").mkdir(exist_ok=True)
    (store.root / "ab" / ".half-written.tmp").write_bytes(b"x")
    with TestClient(create_app(s)) as c:
        assert not store.exists(orphan)
        assert not list(store.root.glob("*/.*.tmp"))
        # a missing state is no evidence that the row is garbage (wrong or unmounted data
        # directory): the row stays, and its predictions fail loudly instead of vanishing
        assert c.get(f"/v1/adapted-models/{vanished}").status_code == 200
        r = c.post(f"/v1/adapted-models/{vanished}/predictions", json={"inputs": [[0.0]]})
        assert r.status_code == 500 and "missing" in r.json()["detail"]
        assert c.get(f"/v1/adapted-models/{kept}").status_code == 200
        path = store.path(kept_sha)
        data = bytearray(path.read_bytes())
        data[-1] ^= 0xFF
        path.write_bytes(bytes(data))
        c.app.state.engine.states._cache.discard(kept_sha)
        r = c.post(f"/v1/adapted-models/{kept}/predictions", json={"inputs": [[0.0]]})
        assert r.status_code == 500 and r.headers["content-type"] == PROBLEM
        assert "checksum" in r.json()["detail"]
        assert "metaserve_corrupt_artifacts_total 1.0" in c.get("/metrics").text
