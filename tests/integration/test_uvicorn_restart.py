"""A real uvicorn process on PostgreSQL: adapt, restart, same predictions from the same ID."""

from __future__ import annotations

import signal

import httpx
import pytest

from app.db.migrate import upgrade
from tests.api.helpers import glyph, image_support, png_b64, sine_support
from tests.live_server import Server


def new_key(server: Server, tenant: str) -> str:
    out = server.cli("keys", "create", "--tenant", tenant)
    return out.split("key (shown once): ")[1].strip()


@pytest.fixture
def server(postgres_url, tmp_path):
    upgrade(postgres_url)
    s = Server(postgres_url, tmp_path / "var")
    s.start()
    yield s
    s.stop(signal.SIGKILL)


def test_predictions_survive_a_restart(server):
    key = new_key(server, "acme")
    c = httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {key}"})
    sine = c.post("/v1/adapted-models", json={"meta_learner": "sinusoid-maml",
                                              "support": sine_support()})
    image = c.post("/v1/adapted-models", json={"meta_learner": "omniglot-protonet",
                                               "support": image_support()})
    assert sine.status_code == 201 and image.status_code == 201
    sine_q = {"inputs": [[-2.5], [0.1], [4.0]]}
    image_q = {"inputs": [png_b64(glyph(k, jitter=2)) for k in range(3)]}
    before = (c.post(f"/v1/adapted-models/{sine.json()['id']}/predictions", json=sine_q).json(),
              c.post(f"/v1/adapted-models/{image.json()['id']}/predictions", json=image_q).json())
    server.stop()
    server.start()
    after = (c.post(f"/v1/adapted-models/{sine.json()['id']}/predictions", json=sine_q).json(),
             c.post(f"/v1/adapted-models/{image.json()['id']}/predictions", json=image_q).json())
    assert after == before
    assert c.get(f"/v1/adapted-models/{sine.json()['id']}").json() == sine.json()
