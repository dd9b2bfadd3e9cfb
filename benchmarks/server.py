"""Start a real uvicorn server of this checkout for a benchmark, and stop it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from app.core.ports import free_port

REPO = Path(__file__).resolve().parents[1]


class BenchServer:
    """``with BenchServer(database_url) as url: ...`` (SQLite in a temp dir by default)."""

    def __init__(self, database_url: str | None = None, repo: Path = REPO, **env: str) -> None:
        """``repo``: the checkout whose code serves (another one, for before/after runs)."""
        self.repo = Path(repo)
        self.tmp = tempfile.TemporaryDirectory()
        self.port = free_port()
        self.env = {**os.environ, "METASERVE_DATA_DIR": self.tmp.name,
                    "METASERVE_PORT": str(self.port), "METASERVE_LOG_LEVEL": "warning",
                    "METASERVE_MODELS_DIR": str(self.repo / "models"), **env}
        self.schema_owner: str | None = None
        if database_url and database_url.startswith("postgresql"):
            # a schema of its own for each run: the run's database and its temporary artifact
            # store belong together (a second run on the public schema would find the first
            # run's rows and store binding, and be refused as a store mismatch)
            self.schema_owner, self.schema = database_url, f"bench_{uuid.uuid4().hex[:12]}"
            admin = create_engine(database_url)
            with admin.begin() as conn:
                conn.execute(text(f"CREATE SCHEMA {self.schema}"))
            admin.dispose()
            sep = "&" if "?" in database_url else "?"
            database_url = f"{database_url}{sep}options=-csearch_path%3D{self.schema}"
        if database_url:
            self.env["METASERVE_DATABASE_URL"] = database_url
        self.proc: subprocess.Popen | None = None
        self.headers: dict[str, str] = {}

    def __enter__(self) -> str:
        subprocess.run([sys.executable, "-m", "app.cli", "db", "upgrade"], env=self.env, cwd=self.repo,
                       check=True, capture_output=True)
        if self.env.get("METASERVE_AUTH_ENABLED", "true").lower() not in ("false", "0", "no"):
            out = subprocess.run([sys.executable, "-m", "app.cli", "keys", "create", "--tenant", "bench"],
                                 env=self.env, cwd=self.repo, check=True, capture_output=True, text=True)
            self.headers = {"Authorization": "Bearer " + out.stdout.split("key (shown once): ")[1].strip()}
        self.proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve"], env=self.env,
                                     cwd=self.repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    return url
            except httpx.HTTPError:
                time.sleep(0.2)
        raise TimeoutError("server did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        if self.schema_owner:
            admin = create_engine(self.schema_owner)
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {self.schema} CASCADE"))
            admin.dispose()
        self.tmp.cleanup()
