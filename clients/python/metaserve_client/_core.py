"""The client's logic without I/O: operations yield requests (and sleeps) and receive
responses, so the synchronous and the asynchronous client share every line of it."""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from metaserve_client.errors import (
    APIError,
    IncompatibleServer,
    JobFailed,
    RetryableError,
    WaitTimeout,
    error_for,
)
from metaserve_client.inputs import encode_inputs, encode_targets
from metaserve_client.models import AdaptedModel, ClassPrediction, MetaLearner

SUPPORTED_MAJOR = 0  # the server API major version this client speaks
DEFAULT_URL = "http://127.0.0.1:8000"
RETRY_STATUSES = (429, 503)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass(frozen=True)
class Sleep:
    seconds: float


Op = Generator[Request | Sleep, Response | None, Any]


def settings(base_url: str | None, api_key: str | None) -> tuple[str, str | None]:
    """The base URL and key: arguments first, then METASERVE_URL / METASERVE_API_KEY."""
    url = base_url or os.environ.get("METASERVE_URL") or DEFAULT_URL
    return url.rstrip("/"), api_key or os.environ.get("METASERVE_API_KEY") or None


def backoff(attempt: int, retry_after: float | None, cap: float = 30.0) -> float:
    """Seconds before retry ``attempt`` (1-based): the server's Retry-After when it gave one,
    else exponential with jitter."""
    if retry_after is not None:
        return min(cap, max(0.0, retry_after))
    return min(cap, 0.25 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)


def check(response: Response) -> Any:
    """The body of a 2xx response; otherwise the typed error carrying the problem body."""
    if response.status < 400:
        return response.body
    problem = response.body if isinstance(response.body, dict) else {"detail": str(response.body)}
    raise error_for(response.status, problem, response.headers)


def is_retryable(error: BaseException) -> bool:
    return isinstance(error, RetryableError) and error.status in RETRY_STATUSES


def check_version(body: Any) -> None:
    version = str(((body or {}).get("info") or {}).get("version", ""))
    major = version.split(".")[0]
    if not major.isdigit() or int(major) != SUPPORTED_MAJOR:
        raise IncompatibleServer(
            f"the server's API version is {version or 'unknown'}; this client speaks "
            f"{SUPPORTED_MAJOR}.x: install a metaserve-client that matches the server")


# ----- operations ------------------------------------------------------------------------------
def list_meta_learners() -> Op:
    body = check((yield Request("GET", "/v1/meta-learners")))
    return [MetaLearner.model_validate(item) for item in body["items"]]


def get_meta_learner(name: str) -> Op:
    return MetaLearner.model_validate(check((yield Request("GET", f"/v1/meta-learners/{name}"))))


def input_kind(client: Any, meta_learner: str) -> Op:
    """The input kind of a meta-learner (cached per client)."""
    cache = client._kinds
    if meta_learner not in cache:
        cache[meta_learner] = (yield from get_meta_learner(meta_learner)).input.kind
    return cache[meta_learner]


def create_adapted_model(client: Any, meta_learner: str, inputs: Any, targets: Any,
                         steps: int | str | None, ttl_seconds: int | None, wait: bool,
                         idempotency_key: str | None, timeout: float,
                         abstain_threshold: float | None = None) -> Op:
    kind = yield from input_kind(client, meta_learner)
    options = {k: v for k, v in (("steps", steps), ("ttl_seconds", ttl_seconds),
                                 ("abstain_threshold", abstain_threshold)) if v is not None}
    body: dict[str, Any] = {"meta_learner": meta_learner,
                            "support": {"inputs": encode_inputs(inputs, kind),
                                        "targets": encode_targets(targets)}}
    if options:
        body["options"] = options
    key = idempotency_key or uuid.uuid4().hex  # the same key on every retry: never two models
    made = AdaptedModel.model_validate(check((yield Request(
        "POST", "/v1/adapted-models", json=body, headers={"Idempotency-Key": key}))))
    if wait and made.status != "ready":
        made = yield from wait_ready(made.id, timeout, 0.5)
    return made


def get_adapted_model(adapted_model_id: str) -> Op:
    return AdaptedModel.model_validate(check((yield Request("GET", f"/v1/adapted-models/{adapted_model_id}"))))


def list_page(meta_learner: str | None, page_size: int, cursor: str | None) -> Op:
    params: dict[str, Any] = {"limit": page_size}
    if meta_learner:
        params["meta_learner"] = meta_learner
    if cursor:
        params["cursor"] = cursor
    body = check((yield Request("GET", "/v1/adapted-models", params=params)))
    return [AdaptedModel.model_validate(item) for item in body["items"]], body.get("next_cursor")


def delete_adapted_model(adapted_model_id: str) -> Op:
    check((yield Request("DELETE", f"/v1/adapted-models/{adapted_model_id}")))
    return None


def predict(client: Any, model: AdaptedModel, inputs: Any, top_k: int | None) -> Op:
    kind = yield from input_kind(client, f"{model.meta_learner}@{model.meta_learner_version}")
    body: dict[str, Any] = {"inputs": encode_inputs(inputs, kind)}
    if top_k is not None:
        body["top_k"] = top_k
    answer = check((yield Request("POST", f"/v1/adapted-models/{model.id}/predictions", json=body)))
    if answer.get("task_type") == "classification":
        return [ClassPrediction.model_validate(p) for p in answer["predictions"]]
    return [float(v) for v in answer["predictions"]]


def add_examples(client: Any, model: AdaptedModel, inputs: Any, targets: Any) -> Op:
    kind = yield from input_kind(client, f"{model.meta_learner}@{model.meta_learner_version}")
    body = {"inputs": encode_inputs(inputs, kind), "targets": encode_targets(targets)}
    return AdaptedModel.model_validate(check((yield Request(
        "POST", f"/v1/adapted-models/{model.id}/examples", json=body,
        headers={"Idempotency-Key": uuid.uuid4().hex}))))


def wait_ready(adapted_model_id: str, timeout: float, poll: float) -> Op:
    deadline = time.monotonic() + timeout
    while True:
        model = yield from get_adapted_model(adapted_model_id)
        if model.status == "ready":
            return model
        if model.status == "failed":
            raise JobFailed(f"adapted model {adapted_model_id} failed", model.problem)
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"adapted model {adapted_model_id} still {model.status} after {timeout} s")
        yield Sleep(poll)


__all__ = ["APIError", "Op", "Request", "Response", "Sleep"]
