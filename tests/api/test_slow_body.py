"""A request whose body never completes gets 408 within the body timeout, not a held line."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from app.main import create_app
from tests.live_server import serve_in_thread

pytestmark = pytest.mark.slow


def test_a_stalled_body_is_cut_off_at_the_deadline(settings):
    app = create_app(settings.model_copy(update={"body_timeout_seconds": 1.0}))
    with serve_in_thread(app) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"POST /v1/adapted-models HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n" + b'{"meta_learner": "sinusoid-maml", ')
            t0 = time.monotonic()
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                reply += chunk
            waited = time.monotonic() - t0
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
        assert b"application/problem+json" in reply and b"body-timeout" in reply
        assert 0.9 <= waited < 3.0, waited



def count(metrics: str, status: str) -> float:
    """Requests answered with ``status``, over every route, from a /metrics text."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("metaserve_http_requests_total{") and f'status="{status}"' in line)


@pytest.mark.parametrize("path", ["/v1/adapted-models",
                                  "/v1/adapted-models/0123456789abcdef0123456789abcdef/predictions"])
def test_a_client_that_closes_mid_body_is_a_499_not_a_server_error(settings, path, capfd):
    """Headers and one byte of a 1,000-byte body, then the connection closes: counted as 499
    (client closed request, as nginx does), logged at info without a traceback; nobody can
    raise the 5xx rate that alerting reads without a key."""
    app = create_app(settings)
    n = 3
    capfd.readouterr()
    with serve_in_thread(app) as url:
        port = int(url.rsplit(":", 1)[1])
        for _ in range(n):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                conn.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             "Content-Length: 1000\r\n\r\n{".encode())
        deadline = time.monotonic() + 10
        metrics = ""
        while time.monotonic() < deadline:  # the server notices each close on its own time
            metrics = httpx.get(f"{url}/metrics").text
            if count(metrics, "499") + count(metrics, "500") >= n:
                break
            time.sleep(0.1)
    assert count(metrics, "499") == n and count(metrics, "500") == 0, metrics
    logged = capfd.readouterr().err  # the service's JSON log lines
    assert "Traceback" not in logged and '"level": "error"' not in logged, logged
    assert logged.count("client closed the connection before its request body arrived") == n
