"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.api.deps import EngineDep, SessionDep

router = APIRouter(tags=["operations"])


@router.get("/healthz", operation_id="healthz")
async def healthz() -> dict[str, str]:
    """Report that the process is alive (on the event loop: no request thread needed)."""
    return {"status": "ok"}


@router.get("/readyz", operation_id="readyz", responses={503: {"description": "not ready"}})
def readyz(request: Request, session: SessionDep, engine: EngineDep) -> JSONResponse:
    """Report whether the database answers, the registry has meta-learners and the artifact
    store is the one the database is bound to."""
    checks: dict[str, str] = {}
    try:
        session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["database"] = f"error: {type(exc).__name__}"
    loaded = len(engine.registry.learners)
    checks["registry"] = f"{loaded} meta-learners loaded" if loaded else "empty"
    mismatch = getattr(request.app.state, "store_mismatch", None)
    checks["artifact_store"] = mismatch or "ok"
    ready = checks["database"] == "ok" and loaded > 0 and not mismatch
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks,
                         "refused": engine.registry.refused},
                        status_code=200 if ready else 503)


@router.get("/metrics", operation_id="metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus metrics."""
    return Response(generate_latest(request.app.state.metrics.registry),
                    media_type=CONTENT_TYPE_LATEST)
