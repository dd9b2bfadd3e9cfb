"""Admin resources: the catalog's operations."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class PublishRequest(BaseModel):
    files: dict[str, str] = Field(description="file name -> base64 bytes: manifest.json, weights.safetensors "
                                  "and the step-strategy file the manifest names, if any",
                                  examples=[{"manifest.json": "eyJuYW1lIjog...", "weights.safetensors": "..."}])
    alias: str | None = Field(None, examples=["canary"], description="also point name@alias at it")


class PublishResult(BaseModel):
    outcome: str = Field(examples=["published"], description="published, or unchanged (the same files "
                         "were already published under this name and version)")
    ref: str = Field(examples=["my-parts@1.1.0"])
    weights_sha256: str
    alias: str | None = None
    revision: int = Field(description="the catalog revision; replicas serve it within their poll period")


class AliasRequest(BaseModel):
    version: str = Field(examples=["1.1.0"])


class AliasResult(BaseModel):
    alias: str = Field(examples=["my-parts@stable"])
    previous: str | None = Field(description="the version it pointed at before")
    version: str


class CanaryRequest(BaseModel):
    percent: int = Field(ge=0, le=100, examples=[10], description="share of the tenants adapting with the "
                         "bare name sent to name@canary (always the same tenants); 0 stops")


class CanaryResult(BaseModel):
    name: str
    previous_percent: int
    percent: int


class StateResult(BaseModel):
    ref: str
    state: str = Field(examples=["retired"])
    deleted_files: int | None = None


class History(BaseModel):
    events: list[dict[str, Any]] = Field(description="oldest first: id, at, actor, action, name, version, detail")
