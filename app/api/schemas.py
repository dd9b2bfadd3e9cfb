"""Types shared by the API's schema families."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path as PathParam
from pydantic import BaseModel, Field, StrictFloat, StrictInt, StrictStr

AdaptedModelId = Annotated[
    str, PathParam(max_length=64, examples=["3f2a9c1e0b7d4e6f8a5b2c1d0e9f8a7b"])
]
Input = StrictFloat | StrictInt | StrictStr | list[Any]
Label = StrictInt | StrictStr


class ProblemDetails(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(examples=["urn:metaserve:problem:unknown-meta-learner"])
    title: str
    status: int
    detail: str
    instance: str


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ProblemDetails, "content": {"application/problem+json": {}}}
    for code in (400, 401, 404, 409, 413, 422, 429, 503)
}
