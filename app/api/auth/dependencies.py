"""``TenantDep``: the tenant of the request's API key (or ``default`` when auth is off).

Every ``/v1`` router depends on :func:`get_tenant` (authenticated by default); the public
list is ``/healthz``, ``/readyz``, ``/metrics`` and the API documents. The bearer scheme is
declared in the OpenAPI document, so ``/docs`` has Authorize and generated clients send it.
"""

from __future__ import annotations

from typing import Annotated, NoReturn

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.api.auth.rate_limit import retry_after
from app.api.auth.service import authenticate
from app.api.deps import SessionDep, SettingsDep
from app.core.problems import RateLimited, Unauthorized

DEFAULT_TENANT = "default"
bearer = HTTPBearer(auto_error=False, scheme_name="ApiKey",
                    description="an API key from `metaserve keys create`, as `Authorization: Bearer <key>`")


def refuse(request: Request, settings: SettingsDep, why: str) -> NoReturn:
    """401, or 429 once a client address has failed too often (guessing keys is throttled)."""
    client = request.client.host if request.client else "unknown"
    wait = request.app.state.auth_failure_limiter.acquire(client)
    if wait > 0:
        raise RateLimited(f"too many failed authentications from this address (limit "
                          f"{settings.auth_failures_per_minute} per minute)", retry_after(wait))
    raise Unauthorized(why)


def get_tenant(request: Request, session: SessionDep, settings: SettingsDep,
               credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
    if not settings.auth_enabled:
        return DEFAULT_TENANT
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials.strip():
        refuse(request, settings, "send an API key as 'Authorization: Bearer <key>'")
    found = authenticate(session=session, key=credentials.credentials.strip())
    session.commit()  # end the read transaction: the connection goes back to the pool
    if found is None:
        refuse(request, settings, "the API key is not valid or has been revoked")
    key_id, tenant = found
    wait = request.app.state.rate_limiter.acquire(key_id)
    if wait > 0:
        raise RateLimited(f"rate limit of {settings.rate_limit_per_minute} requests per minute "
                          "exceeded for this key", retry_after(wait))
    return tenant


TenantDep = Annotated[str, Depends(get_tenant)]
