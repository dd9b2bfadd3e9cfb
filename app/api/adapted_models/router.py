"""``/v1/adapted-models``: adapt, read, list, delete, predict."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response, status
from sqlalchemy.orm import Session

from app.api.adapted_models import service
from app.api.adapted_models.dependencies import OwnedAdaptedModel
from app.api.adapted_models.schemas import (
    IMAGE_EXAMPLE,
    SINE_EXAMPLE,
    AdaptedModelCreate,
    AdaptedModelList,
    AdaptedModelRead,
    PredictionRequest,
    PredictionResponse,
    SupportSet,
    predictions_response,
    row_to_read,
)
from app.api.auth.dependencies import TenantDep
from app.api.deps import EngineDep, SessionDep
from app.api.json_body import openapi_body, parse_body
from app.api.lean_call import LeanCallDep, LeanCallRoute
from app.api.schemas import AdaptedModelId, QueryInputs, problem_responses
from app.db.models import MAX_IDEMPOTENCY_KEY
from app.jobs.queue import QUEUED, RUNNING

router = APIRouter(prefix="/v1/adapted-models", tags=["adapted-models"], route_class=LeanCallRoute)
JSON = "application/json"
MAX_LIST_LIMIT = 200


NAMED_LEARNER = re.compile(rb'"meta_learner"\s*:\s*"([^"\\]{1,141})"')


def learner_named_in(body: bytes) -> str | None:
    """The meta-learner an adaptation's raw body names, read without parsing it: only a hint
    for where the call runs (the body is validated in the call itself). Inside a JSON string a
    quote is escaped, so the pattern finds only the key itself."""
    found = NAMED_LEARNER.search(body)
    return found.group(1).decode("utf-8", "replace") if found else None


def adapted_by(row: Any) -> str:
    """``name@version`` of the meta-learner that adapted ``row``: its placement kind."""
    return f"{row.meta_learner}@{row.meta_learner_version}"


def prefers_async(prefer: str | None) -> bool:
    """RFC 7240 ``Prefer: respond-async`` (among other preferences, any case)."""
    if not prefer:
        return False
    return any(p.split(";")[0].strip().lower() == "respond-async" for p in prefer.split(","))


@router.post("", status_code=status.HTTP_201_CREATED, operation_id="createAdaptedModel",
                  response_model=AdaptedModelRead,
                  responses={202: {"model": AdaptedModelRead, "description": "Accepted: the adaptation "
                                   "runs as a job; poll the Location until status is ready or failed"},
                             **problem_responses(401, 404, 409, 413, 422, 429, 503)},
                  openapi_extra=openapi_body(AdaptedModelCreate, examples={
                      "regression": {"summary": "sinusoid regression, 5 points", "value": SINE_EXAMPLE},
                      "image": {"summary": "image classification from PNGs", "value": IMAGE_EXAMPLE}}))
async def create_adapted_model(
    call: LeanCallDep,
    idempotency_key: Annotated[str | None, Header(max_length=MAX_IDEMPOTENCY_KEY)] = None,
    prefer: Annotated[str | None, Header(max_length=200, description="respond-async: run the "
                                         "adaptation as a job and answer 202 at once")] = None,
) -> Response:
    """Adapt a meta-learner to a support set; returns the adapted model's ID.

    Meta-learners whose adaptation takes seconds (fine-tuning), and any request with
    ``Prefer: respond-async``, answer ``202 Accepted`` with status ``queued``: poll the
    ``Location`` until the status is ``ready`` (or ``failed``, with a problem body)."""
    wants_async = prefers_async(prefer)

    def create(session: Session, tenant: str) -> tuple[str, Any, bool]:
        body = parse_body(AdaptedModelCreate, call.body, call.content_type)
        row, replayed = service.create(session=session, engine=call.state.engine,
                                       settings=call.settings, adapted_model_in=body,
                                       tenant=tenant, idempotency_key=idempotency_key,
                                       respond_async=wants_async, jobs=call.state.jobs)
        return row_to_read(row).model_dump_json(), row, replayed

    placement = call.state.call_placement
    content, row, replayed = await call.run(create, kind=("create", learner_named_in(call.body)))
    placement.remember(row.id, adapted_by(row))
    headers = {"Location": f"/v1/adapted-models/{row.id}"}
    code = status.HTTP_201_CREATED
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    if row.status in (QUEUED, RUNNING):
        code = status.HTTP_202_ACCEPTED
        headers["Retry-After"] = "1"
    if wants_async:
        headers["Preference-Applied"] = "respond-async"
    return Response(content, status_code=code, headers=headers, media_type=JSON)


@router.get("", operation_id="listAdaptedModels", response_model=AdaptedModelList,
            responses=problem_responses(401, 422, 429))
def list_adapted_models(
    session: SessionDep, tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT, description="page size")] = 50,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of a page")] = None,
    meta_learner: Annotated[str | None, Query(max_length=141, description="name or name@version")] = None,
) -> AdaptedModelList:
    """List adapted models, newest first."""
    rows, next_cursor = service.list_page(session=session, limit=limit, cursor=cursor,
                                          meta_learner=meta_learner, tenant=tenant)
    return AdaptedModelList(items=[row_to_read(r) for r in rows], next_cursor=next_cursor)


@router.get("/{adapted_model_id}", operation_id="getAdaptedModel",
            response_model=AdaptedModelRead, responses=problem_responses(401, 404, 422, 429))
def get_adapted_model(row: OwnedAdaptedModel) -> AdaptedModelRead:
    """Read one adapted model."""
    return row_to_read(row)


@router.delete("/{adapted_model_id}", status_code=status.HTTP_204_NO_CONTENT,
               operation_id="deleteAdaptedModel", responses=problem_responses(401, 404, 422, 429))
def delete_adapted_model(row: OwnedAdaptedModel, session: SessionDep, engine: EngineDep) -> Response:
    """Delete an adapted model and, when no other model shares it, its stored state."""
    service.delete(session=session, engine=engine, row=row)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{adapted_model_id}/examples", operation_id="addExamples",
             response_model=AdaptedModelRead, responses=problem_responses(401, 404, 409, 410, 413, 422, 429, 503))
def add_examples(
    row: OwnedAdaptedModel, body: SupportSet, session: SessionDep, engine: EngineDep, response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=MAX_IDEMPOTENCY_KEY)] = None,
) -> AdaptedModelRead:
    """Add labelled examples (new labels too) to an adapted model whose family makes that
    exact (memory-based: its memory grows); the ID stays, ``revision`` goes up by one.
    Others answer 409 examples-not-supported; a concurrent update answers 409 revision-conflict."""
    updated, replayed = service.add_examples(session=session, engine=engine, row=row, examples=body,
                                             idempotency_key=idempotency_key)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return row_to_read(updated)


PREDICT_ERRORS = problem_responses(401, 404, 409, 410, 413, 422, 429, 503)


@router.post("/{adapted_model_id}/predictions", operation_id="predict",
                  response_model=PredictionResponse, responses=PREDICT_ERRORS,
                  openapi_extra=openapi_body(PredictionRequest))
async def predict(call: LeanCallDep, adapted_model_id: AdaptedModelId) -> Response:
    """Predict with an adapted model."""

    def run(session: Session, tenant: str) -> tuple[str, str]:
        row = service.get(session=session, adapted_model_id=adapted_model_id, tenant=tenant)
        body = parse_body(PredictionRequest, call.body, call.content_type)
        served = service.predict(session=session, engine=call.state.engine, row=row,
                                 inputs=body.inputs, top_k=body.top_k)
        rendered = predictions_response(row.task_type, served.predictions, served.std)
        return rendered.model_dump_json(), adapted_by(row)

    placement = call.state.call_placement
    learner = placement.learner_of(adapted_model_id)
    content, used = await call.run(run, kind=None if learner is None else ("predict", learner))
    if learner is None:
        placement.remember(adapted_model_id, used)
    return Response(content, media_type=JSON)


@router.get("/{adapted_model_id}/predictions", operation_id="predictQuery",
            response_model=PredictionResponse, responses=PREDICT_ERRORS)
def predict_query(
    row: OwnedAdaptedModel, session: SessionDep, engine: EngineDep,
    inputs: Annotated[QueryInputs, Query(max_length=8192, description="a non-empty JSON array of inputs")],
    top_k: Annotated[int | None, Query(ge=1, description="classification: the k most likely labels")] = None,
) -> PredictionResponse:
    """Predict for a few inputs given as a JSON array in the query string."""
    served = service.predict(session=session, engine=engine, row=row, inputs=inputs, top_k=top_k)
    return predictions_response(row.task_type, served.predictions, served.std)
