"""Typed domain errors and their RFC 9457 ``application/problem+json`` rendering."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """Base of all errors a client can cause or see; rendered as a problem body."""

    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra
        self.headers: dict[str, str] = {}


class UnknownMetaLearner(Problem):
    status, slug, title = 404, "unknown-meta-learner", "Unknown meta-learner"


class MetaLearnerVersionRetired(Problem):
    status, slug, title = 410, "meta-learner-version-retired", "Meta-learner version retired"


class AdaptedModelNotFound(Problem):
    status, slug, title = 404, "adapted-model-not-found", "Adapted model not found"


class InvalidSupportSet(Problem):
    status, slug, title = 422, "invalid-support-set", "Invalid support set"


class InvalidInputs(Problem):
    status, slug, title = 422, "invalid-inputs", "Invalid inputs"


class InvalidOptions(Problem):
    status, slug, title = 422, "invalid-options", "Invalid adaptation options"


class InvalidCursor(Problem):
    status, slug, title = 422, "invalid-cursor", "Invalid pagination cursor"


class LimitExceeded(Problem):
    status, slug, title = 422, "limit-exceeded", "A limit was exceeded"


class Unauthorized(Problem):
    status, slug, title = 401, "unauthorized", "Missing or invalid API key"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.headers = {"WWW-Authenticate": "Bearer"}


class AdminScopeRequired(Problem):
    status, slug, title = 403, "admin-scope-required", "An admin API key is required"


class PublishCheckFailed(Problem):
    status, slug, title = 422, "publish-check-failed", "The version failed a publishing check"


class CatalogConflict(Problem):
    status, slug, title = 409, "catalog-conflict", "The catalog's state does not allow this"


class RetryLater(Problem):
    """A refusal that tells the client when to try again (``Retry-After``, seconds)."""

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.headers = {"Retry-After": str(retry_after)}


class RateLimited(RetryLater):
    status, slug, title = 429, "rate-limited", "Too many requests"


class TooManyInProgress(RetryLater):
    status, slug, title = 429, "too-many-in-progress", "Too many adaptations in progress"


class TooManyPendingJobs(RetryLater):
    status, slug, title = 429, "too-many-pending-jobs", "Too many adaptation jobs pending"


class IdempotencyConflict(Problem):
    status, slug, title = 409, "idempotency-key-reused", "Idempotency key reused with another body"


class QuotaExceeded(Problem):
    status, slug, title = 409, "quota-exceeded", "Adapted-model quota exceeded"


class ModelNotReady(Problem):
    """Predictions on an adapted model whose adaptation is queued, running or failed."""

    status, slug, title = 409, "adapted-model-not-ready", "Adapted model not ready"

    @classmethod
    def for_row(cls, row: Any) -> ModelNotReady:
        where = f"/v1/adapted-models/{row.id}"
        if row.status == "failed":
            reason = (row.error or {}).get("detail", "see the model's error")
            problem = cls(f"adapted model {row.id} failed to adapt and cannot predict: {reason}; "
                          "create it again", adapted_model_status=row.status)
        else:
            problem = cls(f"adapted model {row.id} is {row.status} (progress "
                          f"{row.progress or 0.0:.0%}); poll GET {where} until its status is "
                          "ready", adapted_model_status=row.status)
            problem.headers = {"Retry-After": "1", "Location": where}
        return problem


class ExamplesNotSupported(Problem):
    status, slug, title = 409, "examples-not-supported", "This meta-learner cannot add examples"


class RevisionConflict(Problem):
    status, slug, title = 409, "revision-conflict", "The adapted model changed meanwhile"


class Overloaded(RetryLater):
    status, slug, title = 503, "overloaded", "Too many requests in progress"


class StoreUnavailable(RetryLater):
    status, slug, title = 503, "artifact-store-unavailable", "Artifact store unavailable"


class StoreMismatch(Problem):
    status, slug, title = 503, "store-mismatch", "Wrong artifact store; not serving"


class ArtifactCorrupt(Problem):
    status, slug, title = 500, "artifact-corrupt", "Stored adapted state failed its checksum"


class StateMissing(Problem):
    """The row exists but its stored state does not (a wrong or unmounted data directory)."""

    status, slug, title = 500, "adapted-state-missing", "Stored adapted state not found"


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

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc.status, exc.title, exc.detail, exc.slug,
                                exc.headers, **exc.extra)

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
