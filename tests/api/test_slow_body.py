"""A request whose body never completes gets 408 within the body timeout, not a held line."""

from __future__ import annotations

import socket
import time

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
