"""The scale-out topology on one machine, without Docker: PostgreSQL (the machine's own),
SeaweedFS (S3), a one-shot migration, N API replicas, M job workers, nginx in front.

    python -m deploy.local_cluster up      # prints the balancer's URL; state under var/cluster
    python -m deploy.local_cluster down    # stops everything it started, by PID

Settings (environment; the same names as compose.yaml and deploy/k8s):
  METASERVE_CLUSTER_DIR        var/cluster   PIDs, logs, nginx config, SeaweedFS data
  METASERVE_CLUSTER_PORT       8080          the balancer (nginx) on 127.0.0.1
  METASERVE_CLUSTER_API_PORT   8101          first API replica; the others follow
  METASERVE_CLUSTER_REPLICAS   2             API replicas
  METASERVE_CLUSTER_WORKERS    2             job workers (``metaserve worker``)
  METASERVE_DATABASE_URL       postgresql+psycopg://postgres@127.0.0.1:5432/metaserve
Every other METASERVE_* variable is passed to the replicas and workers as it is; the workers'
METASERVE_JOB_TORCH_THREADS defaults to the machine's cores / METASERVE_CLUSTER_WORKERS.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from app.core.config import available_cores

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/metaserve"

NGINX_CONF = """worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/nginx-body;
    proxy_temp_path {dir}/nginx-proxy;
    fastcgi_temp_path {dir}/nginx-fastcgi;
    uwsgi_temp_path {dir}/nginx-uwsgi;
    scgi_temp_path {dir}/nginx-scgi;
    client_max_body_size 16m;
    upstream metaserve {{
        least_conn;
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://metaserve;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_connect_timeout 2s;
            proxy_read_timeout 120s;
            # a replica that refuses, resets or answers 502/503 is skipped and the request goes
            # to the next one (creates are safe to resend with an Idempotency-Key)
            proxy_next_upstream error timeout http_502 http_503 non_idempotent;
            proxy_next_upstream_tries 3;
        }}
    }}
}}
"""


@dataclass
class Cluster:
    root: Path
    port: int
    api_port: int
    replicas: int
    workers: int
    database_url: str
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Cluster:
        env = dict(os.environ if env is None else env)
        return cls(root=Path(env.get("METASERVE_CLUSTER_DIR", REPO / "var" / "cluster")).resolve(),
                   port=int(env.get("METASERVE_CLUSTER_PORT", 8080)),
                   api_port=int(env.get("METASERVE_CLUSTER_API_PORT", 8101)),
                   replicas=int(env.get("METASERVE_CLUSTER_REPLICAS", 2)),
                   workers=int(env.get("METASERVE_CLUSTER_WORKERS", 2)),
                   database_url=env.get("METASERVE_DATABASE_URL", DEFAULT_DATABASE), env=env)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def replica_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.api_port + i}" for i in range(self.replicas)]

    @property
    def pids_file(self) -> Path:
        return self.root / "pids.json"

    def _pids(self) -> dict[str, int]:
        return json.loads(self.pids_file.read_text()) if self.pids_file.exists() else {}

    def _record(self, name: str, pid: int) -> None:
        pids = self._pids()
        pids[name] = pid
        self.pids_file.write_text(json.dumps(pids, indent=1))

    def service_env(self, endpoint: str) -> dict[str, str]:
        return {**self.env, "METASERVE_DATABASE_URL": self.database_url,
                "METASERVE_ARTIFACT_STORE": "s3", "METASERVE_S3_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": self.env.get("AWS_ACCESS_KEY_ID", "metaserve-local"),
                "AWS_SECRET_ACCESS_KEY": self.env.get("AWS_SECRET_ACCESS_KEY", "metaserve-local-secret"),
                "METASERVE_DATA_DIR": str(self.root / "data"), "METASERVE_MODELS_DIR": str(REPO / "models"),
                "METASERVE_JOB_THREADS": "0",  # API replicas enqueue; workers run the jobs
                "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = (self.root / f"{name}.log").open("ab")
        proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self._record(name, proc.pid)
        return proc

    # ----- up ---------------------------------------------------------------------------------
    def up(self, timeout: float = 120.0) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._pids():
            raise RuntimeError(f"a cluster is already recorded in {self.pids_file}; run down first")
        for port in (self.port, *(self.api_port + i for i in range(self.replicas))):
            if port_in_use(port):
                raise RuntimeError(f"127.0.0.1:{port} is in use; choose other METASERVE_CLUSTER_* ports")
        ensure_database(self.database_url)
        weed = self._spawn("seaweedfs", [sys.executable, "-m", "app.storage.seaweedfs",
                                         str(self.root / "seaweedfs")], self.service_env(""))
        endpoint = self._read_endpoint(weed)
        env = self.service_env(endpoint)
        subprocess.run([sys.executable, "-m", "app.cli", "db", "upgrade"], env=env, cwd=REPO, check=True,
                       capture_output=True)  # the one-shot migration: replicas never race it
        for i in range(self.replicas):
            self.start_replica(i, env)
        for i in range(self.workers):
            self.start_worker(i, env)
        self._start_nginx()
        self.wait_replicas_ready(timeout)
        (self.root / "endpoint").write_text(endpoint)
        return self.url

    def _read_endpoint(self, weed: subprocess.Popen) -> str:
        log = self.root / "seaweedfs.log"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if weed.poll() is not None:
                raise RuntimeError(f"SeaweedFS exited; see {log}")
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("http://127.0.0.1:"):
                    return line.strip()
            time.sleep(0.2)
        raise TimeoutError("SeaweedFS did not start")

    def wait_replicas_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        try:
            for url in [*self.replica_urls(), self.url]:
                wait_ready(url, deadline)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.describe()}") from None

    def describe(self, lines: int = 15) -> str:
        """Every recorded process: running or gone, and the end of its log."""
        parts = []
        for name, pid in self._pids().items():
            log = self.root / f"{name}.log"
            tail = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else []
            parts.append(f"--- {name} (pid {pid}, {'running' if alive(pid) else 'gone'}) ---")
            parts.extend(tail)
        return "\n".join(parts)

    def env_for_services(self) -> dict[str, str]:
        return self.service_env((self.root / "endpoint").read_text().strip())

    def start_replica(self, i: int, env: dict[str, str] | None = None) -> subprocess.Popen:
        env = env or self.env_for_services()
        return self._spawn(f"api-{i}", [sys.executable, "-m", "app.cli", "serve", "--port",
                                        str(self.api_port + i)], env)

    def start_worker(self, i: int, env: dict[str, str] | None = None) -> subprocess.Popen:
        env = {**(env or self.env_for_services()), "METASERVE_JOB_THREADS": "1"}
        # the workers share this machine's cores (a worker alone on its machine takes them all)
        env.setdefault("METASERVE_JOB_TORCH_THREADS", str(max(1, available_cores() // max(self.workers, 1))))
        return self._spawn(f"worker-{i}", [sys.executable, "-m", "app.cli", "worker"], env)

    def _start_nginx(self) -> None:
        conf = self.root / "nginx.conf"
        conf.write_text(nginx_config(self.root, [self.api_port + i for i in range(self.replicas)], self.port))
        self._spawn("nginx", [nginx_binary(), "-c", str(conf), "-p", str(self.root), "-g", "daemon off;"],
                    dict(os.environ))

    # ----- down -------------------------------------------------------------------------------
    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        pid = self._pids()[name]
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if sig == signal.SIGKILL:
            wait_gone(pid)

    def down(self) -> None:
        pids = self._pids()
        order = sorted(pids, key=lambda n: (n.startswith("seaweedfs"), n))  # the store goes last
        for name in order:
            try:
                os.kill(pids[name], signal.SIGTERM)
            except ProcessLookupError:
                continue
        for name in order:
            if not wait_gone(pids[name], 20):
                try:
                    os.kill(pids[name], signal.SIGKILL)
                except ProcessLookupError:
                    pass
                wait_gone(pids[name], 5)
        self.pids_file.unlink(missing_ok=True)


def nginx_config(root: Path, api_ports: list[int], port: int) -> str:
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in api_ports)
    return NGINX_CONF.format(dir=root, servers=servers, port=port)


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def nginx_binary() -> str:
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"):
        if Path(candidate).is_file():
            return candidate
    raise FileNotFoundError("nginx is not installed: apt-get install nginx-light")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def wait_ready(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not become ready")


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database named in ``url`` when it does not exist."""
    from sqlalchemy import create_engine, text  # noqa: PLC0415
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    parsed = make_url(url)
    if not parsed.drivername.startswith("postgresql") or not parsed.database:
        return
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": parsed.database}):
            conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    admin.dispose()


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("up", "down"):
        print(__doc__)
        return 2
    cluster = Cluster.from_env()
    if argv[0] == "up":
        try:
            print(cluster.up(), flush=True)
        except Exception:
            cluster.down()
            raise
    else:
        cluster.down()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
