"""One thread-pool call per request, for the routes that carry most of the traffic.

A plain FastAPI route with a database session, an authenticated tenant and a sync handler
hops between the event loop and the thread pool once per dependency (session, tenant, owned
row) and once more for the handler, and validates its body through FastAPI's generic path.
A route that takes a ``LeanCallDep`` is declared like every other ``/v1`` route (same router,
same authentication dependency), but reads what it needs from the request on the event loop and
then authenticates, validates, reads and writes the database and calls the engine in a single
worker-thread function (``LeanCall.run``), with the same checks in the same order and the same
problem bodies. The router-level authentication leaves such routes to ``run``, which always
authenticates before the work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.api.auth.dependencies import IN_CALL_AUTHENTICATORS, client_address, tenant_of
from app.core.config import Settings

T = TypeVar("T")


@dataclass(frozen=True)
class LeanCall:
    state: Any  # the application's state: engine, session factory, limiters, job runner
    settings: Settings
    body: bytes
    content_type: str | None
    authorization: str | None
    client: str

    @classmethod
    async def of(cls, request: Request) -> LeanCall:
        """The request's parts, its body read in full."""
        state = request.app.state
        headers = request.headers
        return cls(state, state.settings, await request.body(), headers.get("content-type"),
                   headers.get("authorization"), client_address(request))

    async def run(self, work: Callable[[Session, str], T]) -> T:
        """``work(session, tenant)`` in one worker thread, after the caller's API key is checked
        (401 / 429 as every authenticated route answers)."""

        def call() -> T:
            with self.state.session_factory() as session:
                tenant = tenant_of(state=self.state, settings=self.settings, session=session,
                                   authorization=self.authorization, client=self.client)
                return work(session, tenant)

        return await run_in_threadpool(call)


LeanCallDep = Annotated[LeanCall, Depends(LeanCall.of)]
IN_CALL_AUTHENTICATORS.add(LeanCall.of)
