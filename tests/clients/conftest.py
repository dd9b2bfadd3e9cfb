"""A real uvicorn server (SQLite, API keys on) on a free port, for the client tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI

from app.api.auth.service import create_key
from app.core.config import Settings
from app.db.migrate import upgrade
from app.main import create_app
from tests.conftest import REPO
from tests.live_server import serve_in_thread


@dataclass
class LiveServer:
    url: str
    key: str
    app: FastAPI


@pytest.fixture
def live_server(tmp_path) -> Iterator[LiveServer]:
    url = f"sqlite:///{tmp_path / 'client.db'}"
    upgrade(url)
    settings = Settings(data_dir=tmp_path / "var", database_url=url, models_dir=REPO / "models",
                        workers=2, torch_threads=1, warm_up=False, auth_enabled=True,
                        rate_limit_per_minute=0, log_level="warning")
    app = create_app(settings)
    with serve_in_thread(app) as base:
        with app.state.session_factory() as session:
            _, key = create_key(session=session, tenant="client-tests")
        yield LiveServer(base, key, app)
