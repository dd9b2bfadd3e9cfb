"""Types shared by the API's schema families, and the problem responses every route declares."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Path as PathParam
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from app.core.problems import PROBLEM_JSON

AdaptedModelId = Annotated[
    str, PathParam(max_length=64, examples=["3f2a9c1e0b7d4e6f8a5b2c1d0e9f8a7b"])
]
MAX_INPUT_DEPTH = 4  # an image [1, 28, 28] is 3 levels inside the list of inputs


def check_depth(inputs: list[Any]) -> list[Any]:
    """Refuse nesting deeper than any input kind uses (checked level by level, without
    recursion; scalars are never queued, which a py-spy profile showed mattered)."""
    level, depth = [item for item in inputs if isinstance(item, list)], 1
    while level:
        if depth > MAX_INPUT_DEPTH:
            raise ValueError(f"inputs nest deeper than {MAX_INPUT_DEPTH} levels")
        level = [child for item in level for child in item if isinstance(child, list)]
        depth += 1
    return inputs


Input = StrictFloat | StrictInt | StrictStr | list[Any]
Inputs = Annotated[list[Input], AfterValidator(check_depth)]


def parse_query_inputs(text: str) -> list[Any]:
    """The GET predictions ``inputs`` parameter: a non-empty JSON array, nested within reason."""
    try:
        parsed = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"not valid JSON ({getattr(exc, 'msg', 'nested too deeply')})") from exc
    except ValueError as exc:  # e.g. an integer literal beyond Python's digit limit
        raise ValueError(f"not valid JSON ({exc})") from exc
    if not isinstance(parsed, list) or not parsed:
        raise ValueError("expected a non-empty JSON array")
    return check_depth(parsed)


# declared as a string (what a query parameter is), validated into the list of inputs
QueryInputs = Annotated[str, AfterValidator(parse_query_inputs)]
Label = StrictInt | StrictStr


class ProblemDetails(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "type": "urn:metaserve:problem:unknown-meta-learner", "title": "Unknown meta-learner",
        "status": 404, "detail": "no meta-learner named 'x'; this deployment serves: ...",
        "instance": "/v1/adapted-models"}]})
    type: str = Field(examples=["urn:metaserve:problem:unknown-meta-learner"])
    title: str
    status: int
    detail: str
    instance: str
    errors: list[dict[str, Any]] | None = Field(None, description="validation errors, when any")


DESCRIPTIONS = {
    400: "Bad request", 401: "Missing or invalid API key", 403: "An admin-scope API key is required",
    404: "Not found", 409: "Conflict (quota, idempotency key reused, catalog state)",
    410: "The meta-learner version that adapted this model is no longer installed",
    413: "Body too large", 422: "Invalid input", 429: "Rate limited (see Retry-After)",
    503: "Overloaded (see Retry-After)",
}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for these status codes, each an RFC 9457 problem body."""
    return {code: {"description": DESCRIPTIONS[code], "model": ProblemDetails,
                   "content": {PROBLEM_JSON: {}}} for code in codes}
