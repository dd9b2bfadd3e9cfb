"""Request IDs, access logs, request metrics and the request-body size limit (pure ASGI)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.call_placement import NEVER_INLINE, CallPlacement
from app.core.metrics import Metrics
from app.core.problems import PROBLEM_JSON, problem_body

log = logging.getLogger("metaserve.access")
SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class RequestContextMiddleware:
    """Echo/assign ``X-Request-ID``, enforce ``max_body_bytes`` (413) and a deadline for the
    whole body (408), log and count each request."""

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int,
                 body_timeout_seconds: float = 30.0, max_requests_per_client: int = 0,
                 placement: CallPlacement = NEVER_INLINE) -> None:
        self.app, self.metrics, self.max_body_bytes = app, metrics, max_body_bytes
        self.placement = placement  # counts the process's requests in flight
        self.body_timeout = body_timeout_seconds
        self.max_per_client = max_requests_per_client
        self._in_flight: dict[str, int] = {}  # per client address (the event loop's own state)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if SAFE_ID.match(given) else uuid.uuid4().hex
        start = time.perf_counter()
        status_holder = {"status": 500}
        path = scope.get("path", "")

        exceeded = {"flag": None, "replaced": False}  # flag: the refusal's status (413 or 408)

        async def send_with_id(message: Message) -> None:
            if exceeded["flag"]:
                # the app saw a body cut short by a limit (FastAPI turns any read error into
                # 400): answer the limit's status instead, whatever it says
                await refuse()
                return
            await send_with_request_id(message)

        async def refuse() -> None:
            if not exceeded["replaced"]:
                exceeded["replaced"] = True
                await self._reject(send_with_request_id, path, exceeded["flag"] or 413)

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [
                    (b"x-request-id", request_id.encode())]
            await send(message)

        declared = headers.get(b"content-length")
        too_large = declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes
        received = 0

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout

        body_done = False

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # after the body only a disconnect can come: no deadline
                return await receive()
            try:
                # asyncio's own timeout: anyio's fail_after (a cancel scope per read) cost about
                # a tenth of a small request's event-loop time in a py-spy profile
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                exceeded["flag"] = 408  # a body that never completes does not hold the line
                raise _BodyRefused() from None
            if message["type"] == "http.request":
                body_done = not message.get("more_body", False)
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    exceeded["flag"] = 413
                    raise _BodyRefused()
            return message

        client = (scope.get("client") or ("unknown", 0))[0]
        counted = False
        self.placement.enter()
        try:
            if self.max_per_client > 0 and path.startswith("/v1/"):
                if self._in_flight.get(client, 0) >= self.max_per_client:
                    await self._too_many(send_with_request_id, path)
                    return
                self._in_flight[client] = self._in_flight.get(client, 0) + 1
                counted = True
            if too_large:
                exceeded["flag"] = 413
                raise _BodyRefused()
            await self.app(scope, limited_receive, send_with_id)
        except _BodyRefused:
            await refuse()
        finally:
            self.placement.leave()
            if counted:
                left = self._in_flight[client] - 1
                if left > 0:
                    self._in_flight[client] = left
                else:
                    self._in_flight.pop(client, None)
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(method, template, str(status_holder["status"])).inc()
            self.metrics.request_latency.labels(method, template).observe(elapsed)
            log.info("request", extra={"request_id": request_id, "method": method, "path": path,
                                       "status": status_holder["status"],
                                       "duration_ms": round(elapsed * 1000, 2)})

    async def _too_many(self, send: Send, path: str) -> None:
        import json

        body = json.dumps(problem_body(
            429, "Too many requests in progress",
            f"this client already has {self.max_per_client} requests in progress",
            "too-many-requests-in-progress", path)).encode()
        await send({"type": "http.response.start", "status": 429, "headers": [
            (b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode()),
            (b"retry-after", b"1")]})
        await send({"type": "http.response.body", "body": body})

    async def _reject(self, send: Send, path: str, status: int) -> None:
        import json

        if status == 408:
            problem = problem_body(408, "Request body too slow",
                                   f"the request body did not arrive within {self.body_timeout} s",
                                   "body-timeout", path)
        else:
            problem = problem_body(413, "Request body too large",
                                   f"the request body exceeds {self.max_body_bytes} bytes",
                                   "body-too-large", path)
        body = json.dumps(problem).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class _BodyRefused(Exception):
    pass
