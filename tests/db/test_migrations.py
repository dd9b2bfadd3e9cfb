"""Migration 0003 binds existing adapted models to the weights the registry last served."""

from __future__ import annotations

import os

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


@pytest.mark.slow
def test_a_wheel_install_migrates_from_any_directory(tmp_path):
    """The migrations travel inside the package: the built wheel holds every revision, and the
    installed code migrates an empty database from a folder unrelated to the source tree (it once
    looked two levels above its own file, which in site-packages is the alembic *library*)."""
    import subprocess
    import sys
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path / "wheel"), str(REPO)], check=True)
    (wheel,) = (tmp_path / "wheel").glob("metaserve-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    revisions = sorted(p.name for p in (REPO / "app" / "db" / "migrations" / "versions").glob("*.py"))
    assert revisions and {f"app/db/migrations/versions/{r}" for r in revisions} <= names
    assert "app/db/migrations/env.py" in names
    static = REPO / "app" / "console" / "static"  # package data too: the console's files
    assert {f"app/console/static/{p.relative_to(static).as_posix()}" for p in static.rglob("*.*")} <= names
    site = tmp_path / "site-packages"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = ("import app, sys; from app.db.migrate import upgrade; "
              f"assert app.__file__.startswith({str(site)!r}), app.__file__; "
              "upgrade(sys.argv[1]); print('migrated')")
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", script, f"sqlite:///{tmp_path / 'a.db'}"], cwd=elsewhere,
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    engine = create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    engine.dispose()
    assert version == revisions[-1].split("_")[0]
