"""Property-based fuzz of the API from its own OpenAPI schema: no 5xx, every 4xx a problem."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, reject, settings

from app.core.config import Settings
from app.db.migrate import upgrade
from app.main import create_app
from tests.conftest import REPO

EXAMPLES = int(os.environ.get("METASERVE_FUZZ_EXAMPLES", "40"))


def fuzz_settings(root: Path) -> Settings:
    url = f"sqlite:///{root / 'fuzz.db'}"
    upgrade(url)
    return Settings(data_dir=root, database_url=url, models_dir=REPO / "models", workers=2,
                    torch_threads=1, auth_enabled=False, rate_limit_per_minute=0, warm_up=False)


_ROOT = Path(tempfile.mkdtemp(prefix="metaserve-fuzz-"))
APP = create_app(fuzz_settings(_ROOT))
schema = schemathesis.openapi.from_dict(APP.openapi())
SEEN: list[tuple[str, int]] = []


@pytest.fixture(scope="module")
def client():
    with TestClient(APP, raise_server_exceptions=False) as c:
        yield c


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_5xx_and_problem_bodies(case, client):
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    kwargs.pop("cookies", None)
    if "data" in kwargs:
        kwargs["content"] = kwargs.pop("data")
    try:
        response = client.request(**kwargs)
    except httpx.InvalidURL:
        reject()  # the HTTP client itself refuses to send it (e.g. a query over its length limit)
    SEEN.append((case.operation.label, response.status_code))
    assert response.status_code < 500, (case.method, case.path, response.text[:500])
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json", response.text[:300]
        body = response.json()
        assert body["status"] == response.status_code and body["title"] and "detail" in body


def test_fuzz_exercised_every_operation():
    """Runs after the fuzz above: it really called every operation, with 2xx and 4xx answers."""
    from collections import Counter

    operations = {op for op, _ in SEEN}
    codes = Counter(code // 100 for _, code in SEEN)
    print(f"fuzz: {len(SEEN)} cases, {len(operations)} operations, status classes {dict(codes)}")
    assert len(operations) == 11 and codes[2] > 0 and codes[4] > 0 and codes[5] == 0
