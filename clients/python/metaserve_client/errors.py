"""Errors as exceptions that carry the server's RFC 9457 problem body."""

from __future__ import annotations

import re
from typing import Any

FIELD = re.compile(r"^([A-Za-z_]\w*(?:\.\w+|\[\d+\])+)[: =]|^([A-Za-z_]\w*):")


class MetaserveError(Exception):
    """Base of every error this client raises."""


class IncompatibleServer(MetaserveError):
    """The server speaks a major API version this client does not."""


class ConnectionFailed(MetaserveError):
    """The server could not be reached (after the retries)."""


class JobFailed(MetaserveError):
    """An asynchronous adaptation ended in ``failed``; ``problem`` says why."""

    def __init__(self, message: str, problem: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.problem = problem or {}


class WaitTimeout(MetaserveError):
    """``wait()`` ran out of time before the adapted model was ready."""


class APIError(MetaserveError):
    """An HTTP error answered with a problem body: ``status``, ``type``, ``title``, ``detail``."""

    def __init__(self, status: int, problem: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.problem = problem
        self.type = str(problem.get("type", "about:blank"))
        self.title = str(problem.get("title", ""))
        self.detail = str(problem.get("detail", ""))
        self.headers = headers or {}
        super().__init__(f"{status} {self.title}: {self.detail}")


class BadRequest(APIError):
    pass


class Unauthorized(APIError):
    pass


class NotFound(APIError):
    pass


class MethodNotAllowed(APIError):
    """The server does not offer this operation (e.g. an older server)."""


class Conflict(APIError):
    """Quota exceeded, an Idempotency-Key reused with another body, or not ready yet."""


class MetaLearnerRetired(APIError):
    """410: the meta-learner version that adapted this model is no longer installed."""


class PayloadTooLarge(APIError):
    pass


class ValidationError(APIError):
    """422; ``field`` names the failing part of the request when the server says which."""

    def __init__(self, status: int, problem: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(status, problem, headers)
        errors = problem.get("errors") or []
        if errors and errors[0].get("loc"):
            loc = [str(p) for p in errors[0]["loc"]]
            self.field: str | None = ".".join(loc[1:] if loc[0] in ("body", "query", "path") else loc)
        else:
            match = FIELD.match(self.detail)
            self.field = (match.group(1) or match.group(2)) if match else None


class RetryableError(APIError):
    """429 or 503: ``retry_after`` seconds, from the server's Retry-After header."""

    def __init__(self, status: int, problem: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(status, problem, headers)
        try:
            self.retry_after: float | None = float((headers or {}).get("retry-after", ""))
        except ValueError:
            self.retry_after = None


class RateLimited(RetryableError):
    pass


class ServiceUnavailable(RetryableError):
    pass


class ServerError(APIError):
    pass


BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest, 401: Unauthorized, 404: NotFound, 405: MethodNotAllowed, 409: Conflict,
    410: MetaLearnerRetired, 413: PayloadTooLarge, 422: ValidationError, 429: RateLimited,
    503: ServiceUnavailable,
}


def error_for(status: int, problem: dict[str, Any], headers: dict[str, str]) -> APIError:
    cls = BY_STATUS.get(status) or (ServerError if status >= 500 else BadRequest)
    return cls(status, problem, headers)
