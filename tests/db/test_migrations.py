"""Migration 0003 binds existing adapted models to the weights the registry last served."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from app.db.migrate import upgrade

ROW = ("INSERT INTO adapted_models (id, tenant, meta_learner, meta_learner_version, task_type, "
       "labels, artifact_sha256, artifact_bytes, adaptation, created_at, expires_at) VALUES "
       "(:id, 'default', 'm', :version, 'regression', NULL, :sha, 1, '{}', "
       "'2026-01-01T00:00:00+00:00', '2036-01-01T00:00:00+00:00')")


def test_0003_backfills_weights_of_the_version_that_made_each_row(database_url):
    upgrade(database_url, "0002")
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO meta_learners (name, version, algorithm, family, task_type, input_spec, "
            "limits, adaptation_defaults, metrics, weights_sha256, loaded_at) VALUES ('m', '1.1.0', "
            "'maml', 'optimization', 'regression', '{}', '{}', '{}', '{}', :w, "
            "'2026-01-01T00:00:00+00:00')"), {"w": "a" * 64})
        conn.execute(text(ROW), {"id": "current", "version": "1.1.0", "sha": "1" * 64})
        conn.execute(text(ROW), {"id": "older", "version": "1.0.0", "sha": "2" * 64})
    upgrade(database_url)
    with engine.begin() as conn:
        bound = dict(conn.execute(text(
            "SELECT id, meta_learner_weights_sha256 FROM adapted_models")).all())
    engine.dispose()
    # the row made by the version the mirror recorded gets its weights; an older one cannot
    # be proven to match any installed weights, so it stays unbound (its predictions: 410)
    assert bound == {"current": "a" * 64, "older": None}


def test_a_server_refuses_a_database_behind_its_migrations(database_url, tmp_path):
    import pytest
    from fastapi.testclient import TestClient

    from app.core.config import Settings
    from app.db.migrate import SchemaOutOfDate
    from app.main import create_app
    from tests.conftest import REPO

    upgrade(database_url, "0004")
    settings = Settings(data_dir=tmp_path / "var", database_url=database_url, models_dir=REPO / "models",
                        warm_up=False, auth_enabled=False)
    with pytest.raises(SchemaOutOfDate, match="metaserve db upgrade"):
        with TestClient(create_app(settings)):
            pass
    upgrade(database_url)
    with TestClient(create_app(settings)) as c:
        assert c.get("/readyz").status_code == 200
