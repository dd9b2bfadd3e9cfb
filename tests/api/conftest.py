from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.db.migrate import upgrade
from app.main import create_app
from tests.conftest import REPO


@pytest.fixture
def settings(tmp_path, database_url) -> Settings:
    upgrade(database_url)
    return Settings(data_dir=tmp_path / "var", database_url=database_url,
                    models_dir=REPO / "models", workers=2, torch_threads=1,
                    max_body_bytes=2_000_000, auth_enabled=False, warm_up=False)


@pytest.fixture
def client(settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c
