"""The HTTP floor of the peer benchmark: the same client and server stack (httpx, uvicorn
with httptools) around an ASGI app that reads the body and answers a small JSON object, no
framework, no validation, no database. ``python -m benchmarks.peer`` times its request shapes
against it in the same run, so the service's figures can be read as floor + the service."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from types import TracebackType

import httpx

from app.core.ports import free_port


async def app(scope: dict, receive, send) -> None:  # noqa: ANN001
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = json.dumps({"id": "0" * 32, "bytes": size}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class FloorServer:
    """``with FloorServer() as url:`` uvicorn serving :func:`app` on a free local port."""

    def __enter__(self) -> str:
        port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "benchmarks.http_floor:app", "--port", str(port),
             "--log-level", "warning", "--no-access-log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(url, timeout=1)
                return url
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError("floor server did not start")

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
