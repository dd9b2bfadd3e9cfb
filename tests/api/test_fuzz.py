"""Property-based fuzz of the API from its own OpenAPI schema: no 5xx, every 4xx a problem."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, reject, settings

from app.core.config import Settings
from app.db.migrate import upgrade
from app.main import create_app
from tests.conftest import POSTGRES_URL, REPO, postgres_schema_url

EXAMPLES = int(os.environ.get("METASERVE_FUZZ_EXAMPLES", "40"))


def fuzz_settings(root: Path, url: str) -> Settings:
    upgrade(url)
    return Settings(data_dir=root, database_url=url, models_dir=REPO / "models", workers=2,
                    torch_threads=1, auth_enabled=False, rate_limit_per_minute=0, warm_up=False)


_ROOT = Path(tempfile.mkdtemp(prefix="metaserve-fuzz-"))
_SCHEMA_APP = create_app(fuzz_settings(_ROOT, f"sqlite:///{_ROOT / 'schema.db'}"))
schema = schemathesis.openapi.from_dict(_SCHEMA_APP.openapi())
SEEN: list[tuple[str, str, int]] = []
BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


@pytest.fixture(scope="module", params=BACKENDS)
def client(request):
    root = Path(tempfile.mkdtemp(prefix=f"metaserve-fuzz-{request.param}-"))
    if request.param == "sqlite":
        urls = iter([f"sqlite:///{root / 'fuzz.db'}"])
    else:
        urls = postgres_schema_url(POSTGRES_URL)
    url = next(urls)
    with TestClient(create_app(fuzz_settings(root, url)), raise_server_exceptions=False) as c:
        c.backend = request.param
        yield c
    next(urls, None)  # drops the PostgreSQL schema


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
    except Exception as exc:  # the test client's own httpx build (httpx or httpx2)
        if type(exc).__name__ != "InvalidURL":
            raise
        reject()  # the HTTP client itself refuses to send it (e.g. a query over its length limit)
    SEEN.append((client.backend, case.operation.label, response.status_code))
    assert response.status_code < 500, (case.method, case.path, response.text[:500])
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json", response.text[:300]
        body = response.json()
        assert body["status"] == response.status_code and body["title"] and "detail" in body


def test_fuzz_exercised_every_operation():
    """Runs after the fuzz above: it really called every operation, with 2xx and 4xx answers."""
    from collections import Counter

    for backend in BACKENDS:
        seen = [(op, code) for b, op, code in SEEN if b == backend]
        operations = {op for op, _ in seen}
        codes = Counter(code // 100 for _, code in seen)
        print(f"fuzz on {backend}: {len(seen)} cases, {len(operations)} operations, "
              f"status classes {dict(codes)}")
        assert len(operations) == 12 and codes[2] > 0 and codes[4] > 0 and codes[5] == 0
