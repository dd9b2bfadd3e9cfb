"""Authentication of every ``/v1`` operation, and ``TenantDep``: the tenant of the request's API key
(or ``default`` when auth is off).

Every ``/v1`` router is included with :data:`AUTHENTICATED` (authenticated by default); the public
list is ``/healthz``, ``/readyz``, ``/metrics`` and the API documents. A route that does its work
in one worker-thread call (``LeanCallRoute``, the hot create and predict routes) authenticates
inside that call, first; every other route is authenticated before its handler runs. The bearer scheme
is declared in the OpenAPI document, so ``/docs`` has Authorize and generated clients send it.
"""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.api.auth.rate_limit import retry_after
from app.api.auth.service import authenticate
from app.api.deps import require_store
from app.core.config import Settings
from app.core.errors import RateLimited, Unauthorized

DEFAULT_TENANT = "default"
bearer = HTTPBearer(auto_error=False, scheme_name="ApiKey",
                    description="an API key from `metaserve keys create`, as `Authorization: Bearer <key>`")


def refuse(*, state: Any, settings: Settings, client: str, why: str) -> NoReturn:
    """401, or 429 once a client address has failed too often (guessing keys is throttled)."""
    wait = state.auth_failure_limiter.acquire(client)
    if wait > 0:
        raise RateLimited(f"too many failed authentications from this address (limit "
                          f"{settings.auth_failures_per_minute} per minute)", retry_after(wait))
    raise Unauthorized(why)


def tenant_of(*, state: Any, settings: Settings, session: Session, authorization: str | None,
              client: str) -> str:
    """The tenant of an ``Authorization: Bearer <key>`` header (``default`` with auth off),
    after the key's rate limit; 401 or 429 otherwise. Ends the session's read transaction.
    ``state`` is the application's state (its rate limiters)."""
    if not settings.auth_enabled:
        return DEFAULT_TENANT
    scheme, key = get_authorization_scheme_param(authorization)
    if scheme.lower() != "bearer" or not key.strip():
        refuse(state=state, settings=settings, client=client,
               why="send an API key as 'Authorization: Bearer <key>'")
    found = authenticate(session=session, key=key.strip(), verified=state.verified_keys)
    if session.in_transaction():
        session.commit()  # end the read transaction: the connection goes back to the pool
    if found is None:
        refuse(state=state, settings=settings, client=client,
               why="the API key is not valid or has been revoked")
    key_id, tenant = found
    wait = state.rate_limiter.acquire(key_id)
    if wait > 0:
        raise RateLimited(f"rate limit of {settings.rate_limit_per_minute} requests per minute "
                          "exceeded for this key", retry_after(wait))
    return tenant


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def authenticate_request(request: Request,
                               _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
    """The router-level check of every ``/v1`` operation (``bearer`` declares the scheme in the
    OpenAPI document; the header is read here). A lean route (``app.api.lean_call``) resolves no
    dependencies: it authenticates inside its one thread call instead."""
    state = request.app.state

    def check() -> str:
        with state.session_factory() as session:
            return tenant_of(state=state, settings=state.settings, session=session,
                             authorization=request.headers.get("authorization"),
                             client=client_address(request))

    request.state.tenant = await run_in_threadpool(check)


async def get_tenant(request: Request) -> str:
    """The tenant :func:`authenticate_request` found for this request."""
    return request.state.tenant


AUTHENTICATED = [Depends(require_store), Depends(authenticate_request)]
TenantDep = Annotated[str, Depends(get_tenant)]
