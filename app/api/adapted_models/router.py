"""``/v1/adapted-models``: adapt, read, list, delete, predict."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from app.api.adapted_models import service
from app.api.adapted_models.schemas import (
    AdaptedModelCreate,
    AdaptedModelList,
    AdaptedModelRead,
    PredictionRequest,
    PredictionResponse,
    row_to_read,
)
from app.api.auth.dependencies import TenantDep
from app.api.deps import EngineDep, SessionDep, SettingsDep
from app.api.schemas import PROBLEM_RESPONSES, AdaptedModelId
from app.core.problems import InvalidInputs

router = APIRouter(prefix="/v1/adapted-models", tags=["adapted-models"])
ERRORS = {c: PROBLEM_RESPONSES[c] for c in (401, 404, 409, 413, 422, 429, 503)}
READ_ERRORS = {c: PROBLEM_RESPONSES[c] for c in (401, 404, 422, 429)}


@router.post("", status_code=status.HTTP_201_CREATED, operation_id="createAdaptedModel",
             response_model=AdaptedModelRead, responses=ERRORS)
def create_adapted_model(
    body: AdaptedModelCreate, session: SessionDep, engine: EngineDep, settings: SettingsDep,
    tenant: TenantDep, response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> AdaptedModelRead:
    """Adapt a meta-learner to a support set; returns the adapted model's ID."""
    row, replayed = service.create(session=session, engine=engine, settings=settings,
                                   adapted_model_in=body, tenant=tenant,
                                   idempotency_key=idempotency_key)
    response.headers["Location"] = f"/v1/adapted-models/{row.id}"
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return row_to_read(row)


@router.get("", operation_id="listAdaptedModels", response_model=AdaptedModelList,
            responses=READ_ERRORS)
def list_adapted_models(
    session: SessionDep, settings: SettingsDep, tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    meta_learner: Annotated[str | None, Query(max_length=100)] = None,
) -> AdaptedModelList:
    """List adapted models, newest first."""
    rows, next_cursor = service.list_page(session=session, limit=min(limit, settings.max_list_limit),
                                          cursor=cursor, meta_learner=meta_learner, tenant=tenant)
    return AdaptedModelList(items=[row_to_read(r) for r in rows], next_cursor=next_cursor)


@router.get("/{adapted_model_id}", operation_id="getAdaptedModel",
            response_model=AdaptedModelRead, responses=READ_ERRORS)
def get_adapted_model(adapted_model_id: AdaptedModelId, session: SessionDep,
                      tenant: TenantDep) -> AdaptedModelRead:
    """Read one adapted model."""
    return row_to_read(service.get(session=session, adapted_model_id=adapted_model_id, tenant=tenant))


@router.delete("/{adapted_model_id}", status_code=status.HTTP_204_NO_CONTENT,
               operation_id="deleteAdaptedModel", responses=READ_ERRORS)
def delete_adapted_model(adapted_model_id: AdaptedModelId, session: SessionDep,
                         engine: EngineDep, tenant: TenantDep) -> Response:
    """Delete an adapted model and, when no other model shares it, its stored state."""
    service.delete(session=session, engine=engine, adapted_model_id=adapted_model_id, tenant=tenant)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{adapted_model_id}/predictions", operation_id="predict",
             response_model=PredictionResponse, responses=ERRORS)
def predict(adapted_model_id: AdaptedModelId, body: PredictionRequest, session: SessionDep,
            engine: EngineDep, settings: SettingsDep, tenant: TenantDep) -> PredictionResponse:
    """Predict with an adapted model."""
    return service.predict(session=session, engine=engine, settings=settings,
                           adapted_model_id=adapted_model_id, inputs=body.inputs, tenant=tenant)


@router.get("/{adapted_model_id}/predictions", operation_id="predictQuery",
            response_model=PredictionResponse, responses=ERRORS)
def predict_query(
    adapted_model_id: AdaptedModelId, session: SessionDep, engine: EngineDep,
    settings: SettingsDep, tenant: TenantDep,
    inputs: Annotated[str, Query(max_length=8192, description="a JSON array of inputs")],
) -> PredictionResponse:
    """Predict for a few inputs given as a JSON array in the query string."""
    try:
        parsed = json.loads(inputs)
    except json.JSONDecodeError as exc:
        raise InvalidInputs(f"inputs: not valid JSON ({exc.msg})") from exc
    if not isinstance(parsed, list) or not parsed:
        raise InvalidInputs("inputs: expected a non-empty JSON array")
    return service.predict(session=session, engine=engine, settings=settings,
                           adapted_model_id=adapted_model_id, inputs=parsed, tenant=tenant)
