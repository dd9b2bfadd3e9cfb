"""``/v1/admin``: the catalog's operations over HTTP, for admin-scope API keys only, served only
with ``METASERVE_ADMIN_API_ENABLED=true`` (and authentication on)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.security.utils import get_authorization_scheme_param

from app.api.admin import service
from app.api.admin.schemas import (
    AliasRequest,
    AliasResult,
    CanaryRequest,
    CanaryResult,
    History,
    PublishRequest,
    PublishResult,
    StateResult,
)
from app.api.auth.dependencies import bearer, client_address, refuse
from app.api.auth.service import authenticate_with_scope
from app.api.deps import SessionDep, SettingsDep
from app.api.schemas import problem_responses
from app.catalog import operations as ops
from app.core.errors import AdminScopeRequired

Name = Annotated[str, PathParam(max_length=100, examples=["my-parts"])]
Version = Annotated[str, PathParam(max_length=40, examples=["1.1.0"])]
Alias = Annotated[str, PathParam(max_length=40, examples=["stable"])]


def get_admin(request: Request, session: SessionDep, settings: SettingsDep,
              _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
    """The actor (``key:<id>``) of an admin-scope key; 401 without a valid key, 403 for a tenant key."""
    if not settings.auth_enabled:
        raise AdminScopeRequired("the admin API needs authentication (METASERVE_AUTH_ENABLED=true) and an "
                                 "admin-scope key (metaserve keys create --admin)")
    scheme, key = get_authorization_scheme_param(request.headers.get("authorization"))
    found = authenticate_with_scope(session=session, key=key.strip()) if scheme.lower() == "bearer" else None
    session.commit()
    if found is None:
        refuse(state=request.app.state, settings=settings, client=client_address(request),
               why="send an admin API key as 'Authorization: Bearer <key>'")
    key_id, _tenant, scope = found
    if scope != "admin":
        raise AdminScopeRequired("this API key is a tenant key; the catalog's operations need an admin-scope "
                                 "key (metaserve keys create --admin)")
    return f"key:{key_id}"


AdminDep = Annotated[str, Depends(get_admin)]
router = APIRouter(prefix="/v1/admin/meta-learners", tags=["admin"])


@router.post("", operation_id="publishMetaLearnerVersion", response_model=PublishResult, status_code=201,
             responses={200: {"description": "already published with the same files", "model": PublishResult},
                        **problem_responses(401, 403, 409, 413, 422)})
def publish(body: PublishRequest, session: SessionDep, settings: SettingsDep, actor: AdminDep,
            response: Response) -> PublishResult:
    """Check a version (manifest, weights checksum, tensors, smoke adaptation) and publish it; every
    replica serves it within its poll period. Versions are immutable: other files under a
    published name and version are a 409."""
    result = service.publish_upload(session=session, settings=settings, files=body.files, alias=body.alias,
                                    actor=actor)
    if result.outcome == "unchanged":
        response.status_code = 200
    return result


@router.put("/{name}/aliases/{alias}", operation_id="moveMetaLearnerAlias", response_model=AliasResult,
            responses=problem_responses(401, 403, 404, 409, 422))
def move_alias(name: Name, alias: Alias, body: AliasRequest, session: SessionDep, actor: AdminDep) -> AliasResult:
    """Point ``name@alias`` at a version (``stable``: what the bare name serves)."""
    return service.move_alias(session=session, name=name, alias=alias, version=body.version, actor=actor)


@router.put("/{name}/canary", operation_id="setMetaLearnerCanary", response_model=CanaryResult,
            responses=problem_responses(401, 403, 404, 409, 422))
def set_canary(name: Name, body: CanaryRequest, session: SessionDep, actor: AdminDep) -> CanaryResult:
    """Send a share of the tenants adapting with the bare name to ``name@canary``."""
    return service.set_canary(session=session, name=name, percent=body.percent, actor=actor)


@router.post("/{name}/versions/{version}/retire", operation_id="retireMetaLearnerVersion",
             response_model=StateResult, responses=problem_responses(401, 403, 404, 409))
def retire(name: Name, version: Version, session: SessionDep, actor: AdminDep) -> StateResult:
    """Refuse new adaptations with the version; its adapted models answer 410."""
    return service.retire_version(session=session, name=name, version=version, actor=actor)


@router.delete("/{name}/versions/{version}", operation_id="purgeMetaLearnerVersion",
               response_model=StateResult, responses=problem_responses(401, 403, 404, 409))
def purge(name: Name, version: Version, session: SessionDep, settings: SettingsDep,
          actor: AdminDep) -> StateResult:
    """Delete a retired version's files once no adapted model references it."""
    return service.purge_version(session=session, settings=settings, name=name, version=version, actor=actor)


@router.get("/{name}/history", operation_id="metaLearnerHistory", response_model=History,
            responses=problem_responses(401, 403))
def history(name: Name, session: SessionDep, actor: AdminDep) -> History:
    """Every seed, publish, alias move, retirement and purge of ``name``, oldest first."""
    return History(events=ops.history(session=session, name=name))
