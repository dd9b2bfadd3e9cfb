"""One thread-pool call per request, for the routes that carry most of the traffic.

A plain FastAPI route with a database session, an authenticated tenant and a sync handler
hops between the event loop and the thread pool once per dependency (session, tenant, owned
row) and once more for the handler, and validates its body through FastAPI's generic path.
A lean route reads what it needs from the request on the event loop (``LeanCall.of``), then
authenticates, validates, reads and writes the database and calls the engine in a single
worker-thread function, with the same checks in the same order and the same problem bodies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from sqlalchemy.orm import Session

from app.api.auth.dependencies import client_address, tenant_of
from app.api.deps import require_store
from app.core.config import Settings


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
        """The request's parts (its body read in full); 503 while the artifact store is not
        the one the database is bound to."""
        await require_store(request)
        state = request.app.state
        headers = request.headers
        return cls(state, state.settings, await request.body(), headers.get("content-type"),
                   headers.get("authorization"), client_address(request))

    def session(self) -> Session:
        return self.state.session_factory()

    def tenant(self, session: Session) -> str:
        """The caller's tenant (401 / 429 as every authenticated route answers)."""
        return tenant_of(state=self.state, settings=self.settings, session=session,
                         authorization=self.authorization, client=self.client)
