"""Migration 0003 binds existing adapted models to the weights the registry last served."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from app.db.migrate import upgrade
from tests.conftest import REPO

ROW = ("INSERT INTO adapted_models (id, tenant, meta_learner, meta_learner_version, task_type, "
       "labels, artifact_sha256, artifact_bytes, adaptation, created_at, expires_at) VALUES "
       "(:id, 'default', 'm', :version, 'regression', NULL, :sha, 1, '{}', "
       "'2026-01-01T00:00:00+00:00', '2036-01-01T00:00:00+00:00')")
# the registry mirror's row that adapted-model rows reference (name 'm')
META_LEARNER = ("INSERT INTO meta_learners (name, version, algorithm, family, task_type, input_spec, "
                "limits, adaptation_defaults, metrics, weights_sha256, loaded_at) VALUES ('m', :version, "
                "'maml', 'optimization', 'regression', '{}', '{}', '{}', '{}', :w, "
                "'2026-01-01T00:00:00+00:00')")


def test_0003_backfills_weights_of_the_version_that_made_each_row(database_url):
    upgrade(database_url, "0002")
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text(META_LEARNER), {"version": "1.1.0", "w": "a" * 64})
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


def _plans(tmp_path, call) -> list[str]:  # noqa: ANN001
    """SQLite's query plans of the statements ``call(session)`` runs through ``scalar(s)``."""
    from sqlalchemy.orm import Session

    url = f"sqlite:///{tmp_path / 'plans.db'}"
    upgrade(url)
    engine = create_engine(url)
    plans: list[str] = []
    with Session(engine) as session:
        def explained(original):  # noqa: ANN001, ANN202
            def run(statement, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
                compiled = statement.compile(engine)
                params = compiled.construct_params()
                rows = session.connection().exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + str(compiled),
                    tuple(params[name] for name in compiled.positiontup))
                plans.extend(row[-1] for row in rows)
                return original(statement, *args, **kwargs)
            return run

        session.scalar = explained(session.scalar)
        session.scalars = explained(session.scalars)
        call(session)
    engine.dispose()
    return plans


def test_the_quota_count_reads_only_the_tenant_index(tmp_path):
    """At the quota the tenant's live models are counted under its lock: that count must not
    read the rows themselves (166 ms at 100,000 models without expires_at in the index)."""
    from app.api.adapted_models.service import live_models

    plans = _plans(tmp_path, lambda session: live_models(session=session, tenant="t"))
    assert any("COVERING INDEX ix_adapted_models_tenant_created_expires" in p for p in plans), plans


def test_a_listing_page_walks_the_tenant_index_without_sorting(tmp_path):
    """A page of 50 must not sort the tenant's models (159 ms at 100,000 when it did)."""
    from app.api.adapted_models.service import list_page

    plans = _plans(tmp_path, lambda session: list_page(session=session, limit=50, cursor=None,
                                                       meta_learner=None, tenant="t"))
    assert any("ix_adapted_models_tenant_created_expires" in p for p in plans), plans
    assert not any("TEMP B-TREE" in p for p in plans), plans


def test_0010_counts_each_tenants_rows(database_url):
    upgrade(database_url, "0009")
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text(META_LEARNER), {"version": "1.0.0", "w": "a" * 64})
        for ident, tenant in (("a1", "alpha"), ("a2", "alpha"), ("b1", "beta")):
            conn.execute(text(ROW.replace("'default'", f"'{tenant}'")),
                         {"id": ident, "version": "1.0.0", "sha": ident * 32})
    upgrade(database_url)
    with engine.begin() as conn:
        counts = dict(conn.execute(text("SELECT tenant, models FROM tenant_usage")).all())
    engine.dispose()
    assert counts == {"alpha": 2, "beta": 1}


def test_migrations_are_found_outside_the_source_tree(tmp_path, monkeypatch):
    """An installed (non-editable) package has no alembic/ two levels above it: the migrations
    come from METASERVE_MIGRATIONS_DIR, else the current directory, else a clear refusal (it
    once loaded the alembic *library's* folder and failed with an ImportError)."""
    import shutil

    from app.db import migrate

    installed = tmp_path / "site-packages" / "app" / "db"
    installed.mkdir(parents=True)
    monkeypatch.setattr(migrate, "__file__", str(installed / "migrate.py"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("METASERVE_MIGRATIONS_DIR", raising=False)
    with pytest.raises(migrate.MigrationsNotFound, match="set METASERVE_MIGRATIONS_DIR"):
        migrate.migrations_root()
    release = tmp_path / "release"
    release.mkdir()
    shutil.copy(REPO / "alembic.ini", release)
    shutil.copytree(REPO / "alembic", release / "alembic")
    monkeypatch.setenv("METASERVE_MIGRATIONS_DIR", str(release))
    assert migrate.migrations_root() == release
    migrate.upgrade(f"sqlite:///{tmp_path / 'a.db'}")
    monkeypatch.delenv("METASERVE_MIGRATIONS_DIR")
    monkeypatch.chdir(release)  # the container's WORKDIR
    assert migrate.migrations_root() == release
