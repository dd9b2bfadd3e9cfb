"""The Dockerfile really builds and the image serves the README's container steps: one-shot
migration, a key, the server, adapt, predict, 401 without a key, the HEALTHCHECK, a non-root user.

Built with rootful podman through deploy/container/podman.sh (no image registry needed); skipped
only where podman is neither installed nor installable (not root). The image is kept as
``localhost/metaserve:test`` so that a rerun reuses its layers; the container and volume go.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid

import httpx
import pytest

from app.core.ports import free_port
from tests.conftest import REPO

pytestmark = pytest.mark.slow

SCRIPT = REPO / "deploy" / "container" / "podman.sh"
IMAGE = "localhost/metaserve:test"


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    done = subprocess.run(["bash", str(SCRIPT), "podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture(scope="module")
def image():
    if shutil.which("podman") is None and (os.geteuid() != 0 or shutil.which("apt-get") is None):
        pytest.skip("podman is not installed and cannot be (needs root and apt-get)")
    built = subprocess.run(["bash", str(SCRIPT), "build", IMAGE], capture_output=True, text=True, timeout=1800)
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    print(built.stdout.strip())  # build time and image size, shown with -s
    return IMAGE


@pytest.fixture(scope="module")
def served(image):
    volume = f"metaserve-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    podman("volume", "create", volume)
    run = ["run", "--rm", "--network=host", "--no-healthcheck", "-v", f"{volume}:/data", image]
    container = None
    try:
        podman(*run, "metaserve", "db", "upgrade", timeout=300)
        created = podman(*run, "metaserve", "keys", "create", "--tenant", "ci", timeout=300).stdout
        key = next(line.split(":", 1)[1].strip() for line in created.splitlines() if "shown once" in line)
        started = time.monotonic()
        container = podman("run", "-d", "--network=host", "-e", f"METASERVE_PORT={port}",
                           "-v", f"{volume}:/data", image).stdout.strip()
        base = f"http://127.0.0.1:{port}"
        ready = None
        while time.monotonic() - started < 180:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    ready = time.monotonic() - started
                    break
            except httpx.HTTPError:
                pass
            state = podman("inspect", "-f", "{{.State.Running}}", container).stdout.strip()
            assert state == "true", podman("logs", container, check=False).stderr[-4000:]
            time.sleep(0.5)
        logs = podman("logs", container, check=False).stderr[-4000:] if ready is None else ""
        assert ready is not None, f"not ready within 180 s: {logs}"
        print(f"ready {ready:.1f} s after start")
        yield {"base": base, "key": key, "container": container}
    finally:
        if container:
            podman("rm", "-f", "-t", "5", container, check=False)
        podman("volume", "rm", "-f", volume, check=False)


def test_the_image_serves_the_walk_through(served):
    headers = {"Authorization": f"Bearer {served['key']}"}
    with httpx.Client(base_url=served["base"], headers=headers, timeout=60) as client:
        adapted = client.post("/v1/adapted-models", json={
            "meta_learner": "sinusoid-maml",
            "support": {"inputs": [[-4.0], [-2.0], [0.0], [1.5], [3.0]],
                        "targets": [1.96, -1.20, -0.96, 1.68, 1.20]},
            "options": {"steps": 10}})
        assert adapted.status_code == 201, adapted.text
        assert adapted.json()["status"] == "ready"
        predicted = client.post(f"/v1/adapted-models/{adapted.json()['id']}/predictions",
                                json={"inputs": [[-3.0], [0.5], [2.5]]})
        assert predicted.status_code == 200, predicted.text
        # y = 2 sin(x - 0.5) at -3, 0.5, 2.5 is 0.70, 0, 1.82; the adapted model (README) gives 0.74, 0.04, 1.93
        assert predicted.json()["predictions"] == pytest.approx([0.74, 0.04, 1.93], abs=0.05)
        listed = client.get("/v1/meta-learners")
        assert listed.status_code == 200 and {"sinusoid-maml", "text-protonet", "photo-protonet"} <= {
            m["name"] for m in listed.json()["items"]}


def test_the_image_refuses_requests_without_a_key(served):
    refused = httpx.get(f"{served['base']}/v1/meta-learners", timeout=10)
    assert refused.status_code == 401
    assert refused.headers["content-type"].startswith("application/problem+json")


def test_the_image_healthcheck_passes_and_it_runs_as_non_root(served):
    podman("healthcheck", "run", served["container"])
    assert podman("exec", served["container"], "id", "-u").stdout.strip() == "10001"
