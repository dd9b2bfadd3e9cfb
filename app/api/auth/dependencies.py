"""``TenantDep``: the tenant of the request's API key (or ``default`` when auth is off)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.api.auth.rate_limit import retry_after
from app.api.auth.service import authenticate
from app.api.deps import SessionDep, SettingsDep
from app.core.problems import RateLimited, Unauthorized

DEFAULT_TENANT = "default"


def get_tenant(request: Request, session: SessionDep, settings: SettingsDep) -> str:
    if not settings.auth_enabled:
        return DEFAULT_TENANT
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("send an API key as 'Authorization: Bearer <key>'")
    found = authenticate(session=session, key=key.strip())
    if found is None:
        raise Unauthorized("the API key is not valid or has been revoked")
    key_id, tenant = found
    wait = request.app.state.rate_limiter.acquire(key_id)
    if wait > 0:
        raise RateLimited(f"rate limit of {settings.rate_limit_per_minute} requests per minute "
                          "exceeded for this key", retry_after(wait))
    return tenant


TenantDep = Annotated[str, Depends(get_tenant)]
