"""Real uvicorn servers for the tests, on free ports: in a thread of this process, or in a
process of their own (``Server``, for restarts and SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from app.core.ports import free_port

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[str]:
    """Run ``app`` under uvicorn until the block ends; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class Server:
    """``metaserve serve`` in a process of its own (SIGKILL-able), on a free port."""

    def __init__(self, database_url: str, data_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.env = {**os.environ, "METASERVE_DATABASE_URL": database_url,
                    "METASERVE_DATA_DIR": str(data_dir), "METASERVE_MODELS_DIR": str(REPO / "models"),
                    "METASERVE_PORT": str(self.port), "METASERVE_WORKERS": "2",
                    "METASERVE_TORCH_THREADS": "1", **env}
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve"], env=self.env,
                                     cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
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
