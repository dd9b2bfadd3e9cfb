"""``OwnedAdaptedModel``: the adapted model in the path, if it exists, has not expired and
belongs to the request's tenant (resolved once per request); 404 otherwise."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends
from sqlalchemy import Row

from app.api.adapted_models import service
from app.api.auth.dependencies import TenantDep
from app.api.deps import SessionDep
from app.api.schemas import AdaptedModelId


def owned_adapted_model(adapted_model_id: AdaptedModelId, session: SessionDep,
                        tenant: TenantDep) -> Row[Any]:
    return service.get(session=session, adapted_model_id=adapted_model_id, tenant=tenant)


OwnedAdaptedModel = Annotated[Row[Any], Depends(owned_adapted_model)]
