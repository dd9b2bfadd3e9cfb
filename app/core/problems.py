"""Errors rendered as RFC 9457 ``application/problem+json`` bodies: the one table that gives each
domain error (``app.core.errors``) its status, problem type and title, and the handlers that render
those, FastAPI's validation errors and Starlette's HTTP errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from app.core.errors import (
    AdaptedModelNotFound,
    AdminScopeRequired,
    ArtifactCorrupt,
    CatalogConflict,
    ExamplesNotSupported,
    IdempotencyConflict,
    InvalidCursor,
    InvalidInputs,
    InvalidOptions,
    InvalidSupportSet,
    LimitExceeded,
    MetaLearnerVersionRetired,
    MetaserveError,
    ModelNotReady,
    Overloaded,
    PublishCheckFailed,
    QuotaExceeded,
    RateLimited,
    RevisionConflict,
    StateMissing,
    StoreMismatch,
    StoreUnavailable,
    TooManyInProgress,
    TooManyPendingJobs,
    Unauthorized,
    UnknownMetaLearner,
)

PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class ProblemType:
    status: int
    slug: str
    title: str


PROBLEM_TYPES: dict[type[MetaserveError], ProblemType] = {
    UnknownMetaLearner: ProblemType(404, "unknown-meta-learner", "Unknown meta-learner"),
    MetaLearnerVersionRetired: ProblemType(410, "meta-learner-version-retired", "Meta-learner version retired"),
    AdaptedModelNotFound: ProblemType(404, "adapted-model-not-found", "Adapted model not found"),
    InvalidSupportSet: ProblemType(422, "invalid-support-set", "Invalid support set"),
    InvalidInputs: ProblemType(422, "invalid-inputs", "Invalid inputs"),
    InvalidOptions: ProblemType(422, "invalid-options", "Invalid adaptation options"),
    InvalidCursor: ProblemType(422, "invalid-cursor", "Invalid pagination cursor"),
    LimitExceeded: ProblemType(422, "limit-exceeded", "A limit was exceeded"),
    Unauthorized: ProblemType(401, "unauthorized", "Missing or invalid API key"),
    AdminScopeRequired: ProblemType(403, "admin-scope-required", "An admin API key is required"),
    PublishCheckFailed: ProblemType(422, "publish-check-failed", "The version failed a publishing check"),
    CatalogConflict: ProblemType(409, "catalog-conflict", "The catalog's state does not allow this"),
    RateLimited: ProblemType(429, "rate-limited", "Too many requests"),
    TooManyInProgress: ProblemType(429, "too-many-in-progress", "Too many adaptations in progress"),
    TooManyPendingJobs: ProblemType(429, "too-many-pending-jobs", "Too many adaptation jobs pending"),
    IdempotencyConflict: ProblemType(409, "idempotency-key-reused", "Idempotency key reused with another body"),
    QuotaExceeded: ProblemType(409, "quota-exceeded", "Adapted-model quota exceeded"),
    ModelNotReady: ProblemType(409, "adapted-model-not-ready", "Adapted model not ready"),
    ExamplesNotSupported: ProblemType(409, "examples-not-supported", "This meta-learner cannot add examples"),
    RevisionConflict: ProblemType(409, "revision-conflict", "The adapted model changed meanwhile"),
    Overloaded: ProblemType(503, "overloaded", "Too many requests in progress"),
    StoreUnavailable: ProblemType(503, "artifact-store-unavailable", "Artifact store unavailable"),
    StoreMismatch: ProblemType(503, "store-mismatch", "Wrong artifact store; not serving"),
    ArtifactCorrupt: ProblemType(500, "artifact-corrupt", "Stored adapted state failed its checksum"),
    StateMissing: ProblemType(500, "adapted-state-missing", "Stored adapted state not found"),
}
UNMAPPED = ProblemType(400, "bad-request", "Bad request")


def problem_type(exc: MetaserveError) -> ProblemType:
    """The table's entry for the error's class, else for its nearest mapped base."""
    for cls in type(exc).__mro__:
        if cls in PROBLEM_TYPES:
            return PROBLEM_TYPES[cls]
    return UNMAPPED


def problem_headers(exc: MetaserveError) -> dict[str, str]:
    headers = {}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    if exc.location is not None:
        headers["Location"] = exc.location
    return headers


def problem_of(exc: MetaserveError, instance: str) -> dict[str, Any]:
    """The problem body of a domain error (what an adaptation job that failed keeps)."""
    kind = problem_type(exc)
    return problem_body(kind.status, kind.title, exc.detail, kind.slug, instance, **exc.extra)


def problem_body(status: int, title: str, detail: str, slug: str | None, instance: str,
                 **extra: Any) -> dict[str, Any]:
    body = {
        "type": f"urn:metaserve:problem:{slug}" if slug else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    body.update(extra)
    return body


def problem_response(request: Request, status: int, title: str, detail: str,
                     slug: str | None = None, headers: dict[str, str] | None = None,
                     **extra: Any) -> JSONResponse:
    body = problem_body(status, title, detail, slug, request.url.path, **extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route accepts on this path (for a 405's ``Allow`` header)."""
    path = request.url.path
    methods: set[str] = set()
    for regex, route_methods in getattr(request.app.state, "route_methods", []):
        if regex.match(path):
            methods |= set(route_methods)
    return sorted(methods)


def install_problem_handlers(app: FastAPI) -> None:
    """Map domain errors, HTTP errors and validation errors to problem bodies."""

    @app.exception_handler(MetaserveError)
    async def _problem(request: Request, exc: MetaserveError) -> JSONResponse:
        kind = problem_type(exc)
        return problem_response(request, kind.status, kind.title, exc.detail, kind.slug,
                                problem_headers(exc) or None, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return problem_response(
            request, 422, "Request validation failed", f"{where}: {first['msg']}",
            "validation-error", errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # Starlette names only the first matching route's methods
            headers["Allow"] = ", ".join(allowed_methods(request))
        return problem_response(request, exc.status_code, str(exc.detail), str(exc.detail),
                                None, headers or None)

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, exc: ClientDisconnect) -> JSONResponse:
        """The client closed the connection before its body arrived: nothing failed here. 499
        (nginx's "client closed request") keeps it out of the 5xx rate; nobody reads the body."""
        import logging

        logging.getLogger("metaserve.access").info(
            "client closed the connection before its request body arrived",
            extra={"method": request.method, "path": request.url.path})
        return problem_response(request, 499, "Client closed request",
                                "the connection closed before the request body arrived",
                                "client-closed-request")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        import logging

        logging.getLogger("metaserve").exception("unhandled error", exc_info=exc)
        return problem_response(request, 500, "Internal server error",
                                "an unexpected error occurred; it has been logged", "internal")
