"""A weighted canary: a share of the tenants adapting with the bare name get ``name@canary``,
always the same tenants; adapted models record the concrete version; counted per version."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.api.auth.service import create_key
from app.db.session import make_engine, make_session_factory
from app.engine.registry import Registry
from app.main import create_app
from tests.api.test_versions import NAME, SUPPORT
from tests.catalog.test_catalog import cli, deployment, staged, until  # noqa: F401 - the fixture


def test_the_share_is_sticky_per_tenant_and_close_to_the_percent():
    registry = Registry({NAME: {"1.0.0": object(), "2.0.0": object()}}, {}, {NAME: {"canary": "2.0.0"}},
                        canary={NAME: 10})
    tenants = [f"tenant-{i}" for i in range(2000)]
    chosen = [t for t in tenants if registry.in_canary(NAME, t)]
    assert 0.08 < len(chosen) / len(tenants) < 0.12
    assert chosen == [t for t in tenants if registry.in_canary(NAME, t)]  # the same tenants every time
    registry.canary[NAME] = 30  # raising the share keeps the tenants already in the canary
    assert set(chosen) <= {t for t in tenants if registry.in_canary(NAME, t)}
    registry.retired.add((NAME, "2.0.0"))
    assert not any(registry.in_canary(NAME, t) for t in tenants)


def test_canary_over_http(deployment, capsys):  # noqa: F811 - the fixture
    settings, staging = deployment
    settings = settings.model_copy(update={"auth_enabled": True})
    engine = make_engine(settings.resolved_database_url)
    with make_session_factory(engine)() as session:
        keys = [create_key(session=session, tenant=f"t{i}")[1] for i in range(16)]
    headers = [{"Authorization": f"Bearer {key}"} for key in keys]
    engine.dispose()
    with TestClient(create_app(settings)) as c:
        code, out = cli(capsys, "canary", NAME, "50")
        assert code == 2 and "no canary alias" in out["refused"]
        assert cli(capsys, "publish", str(staged(staging, "2.0.0", seed=1)), "--alias", "canary")[0] == 0
        assert cli(capsys, "alias", NAME, "stable", "1.0.0")[0] == 0
        code, out = cli(capsys, "canary", NAME, "50")
        assert code == 0 and out == {"canary": NAME, "from_percent": 0, "percent": 50}
        until(lambda: c.get(f"/v1/meta-learners/{NAME}", headers=headers[0]).json()["canary_percent"] == 50)

        def version(h) -> str:
            made = c.post("/v1/adapted-models", json={"meta_learner": NAME, "support": SUPPORT}, headers=h)
            assert made.status_code == 201, made.text
            return made.json()["meta_learner_version"]

        first = [version(h) for h in headers]
        assert set(first) == {"1.0.0", "2.0.0"}  # 16 tenants at 50%: both, with probability 1 - 2^-15
        assert [version(h) for h in headers] == first  # sticky
        assert c.get(f"/v1/meta-learners/{NAME}@1.0.0", headers=headers[0]).json()["canary_percent"] == 50
        metrics = c.get("/metrics").text
        for v in ("1.0.0", "2.0.0"):
            count = 2 * first.count(v)
            line = f'metaserve_adaptations_requested_total{{meta_learner="{NAME}",version="{v}"}} {count}.0'
            assert line in metrics

        assert cli(capsys, "canary", NAME, "0")[0] == 0
        until(lambda: c.get(f"/v1/meta-learners/{NAME}", headers=headers[0]).json()["canary_percent"] == 0)
        assert {version(h) for h in headers} == {"1.0.0"}
