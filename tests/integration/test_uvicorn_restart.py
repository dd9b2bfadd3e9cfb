"""A real uvicorn process on PostgreSQL: adapt, restart, same predictions from the same ID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.db.migrate import upgrade
from tests.api.helpers import glyph, image_support, png_b64, sine_support
from tests.conftest import REPO
from tests.live_server import free_port


class Server:
    def __init__(self, database_url: str, data_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.env = {**os.environ, "METASERVE_DATABASE_URL": database_url,
                    "METASERVE_DATA_DIR": str(data_dir), "METASERVE_MODELS_DIR": str(REPO / "models"),
                    "METASERVE_PORT": str(self.port), "METASERVE_WORKERS": "2",
                    "METASERVE_TORCH_THREADS": "1", **env}
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve"], env=self.env,
                                     cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(self.proc.stderr.read().decode()[-2000:])
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError("server did not become ready")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)


    def cli(self, *args: str) -> str:
        return subprocess.run([sys.executable, "-m", "app.cli", *args], env=self.env, cwd=REPO,
                              check=True, capture_output=True, text=True).stdout


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
