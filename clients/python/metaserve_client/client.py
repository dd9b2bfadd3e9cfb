"""The synchronous client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx

from metaserve_client import _core
from metaserve_client._core import Op, Request, Response, Sleep
from metaserve_client.errors import ConnectionFailed
from metaserve_client.models import AdaptedModel, MetaLearner

TRANSIENT = (httpx.ConnectError, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError,
             httpx.ReadTimeout, httpx.ConnectTimeout, httpx.PoolTimeout)


class Client:
    """A Metaserve client. ``base_url`` and ``api_key`` default to ``METASERVE_URL`` and
    ``METASERVE_API_KEY``. Retries 429/503 (honouring ``Retry-After``) and dropped
    connections up to ``max_retries`` times; every create carries an ``Idempotency-Key``, so a
    retried create never makes two models."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 timeout: float = 60.0, max_retries: int = 4,
                 transport: httpx.BaseTransport | None = None) -> None:
        url, key = _core.settings(base_url, api_key)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout, transport=transport)
        self.max_retries = max_retries
        self._kinds: dict[str, str] = {}
        self._checked = False
        self.meta_learners = MetaLearners(self)
        self.adapted_models = AdaptedModels(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def server_version(self) -> str:
        """The server's API version (from /openapi.json); raises IncompatibleServer on a
        major version this client does not speak."""
        body = self._send(Request("GET", "/openapi.json")).body
        _core.check_version(body)
        self._checked = True
        return str(body["info"]["version"])

    # ----- plumbing --------------------------------------------------------------------------
    def _run(self, op: Op) -> Any:
        if not self._checked:
            self.server_version()
        try:
            step = next(op)
            while True:
                if isinstance(step, Sleep):
                    time.sleep(step.seconds)
                    step = op.send(None)
                else:
                    step = op.send(self._send_with_retries(step))
        except StopIteration as done:
            return done.value

    def _send_with_retries(self, request: Request) -> Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._send(request)
            except TRANSIENT as exc:
                if attempt > self.max_retries:
                    raise ConnectionFailed(f"{request.method} {request.path}: {exc}") from exc
                time.sleep(_core.backoff(attempt, None))
                continue
            if response.status in _core.RETRY_STATUSES and attempt <= self.max_retries:
                retry_after = _retry_after(response)
                time.sleep(_core.backoff(attempt, retry_after))
                continue
            return response

    def _send(self, request: Request) -> Response:
        r = self._http.request(request.method, request.path, params=request.params,
                               json=request.json, headers=request.headers)
        return _to_response(r)


def _to_response(r: httpx.Response) -> Response:
    try:
        body = r.json() if r.content else None
    except ValueError:
        body = {"detail": r.text[:500]}
    return Response(r.status_code, {k.lower(): v for k, v in r.headers.items()}, body)


def _retry_after(response: Response) -> float | None:
    try:
        return float(response.headers.get("retry-after", ""))
    except ValueError:
        return None


class MetaLearners:
    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self) -> list[MetaLearner]:
        """Every meta-learner the server serves (the newest version of each)."""
        return self._client._run(_core.list_meta_learners())

    def get(self, name: str) -> MetaLearner:
        """One meta-learner: ``name`` (newest) or ``name@version``, with all its versions."""
        return self._client._run(_core.get_meta_learner(name))


class AdaptedModels:
    def __init__(self, client: Client) -> None:
        self._client = client

    def create(self, meta_learner: str, inputs: Any, targets: Any, *, steps: int | str | None = None,
               ttl_seconds: int | None = None, wait: bool = True, idempotency_key: str | None = None,
               timeout: float = 300.0, abstain_threshold: float | None = None) -> AdaptedModel:
        """Adapt ``meta_learner`` to a support set; with ``wait`` an asynchronous job is
        awaited until ready (or raises JobFailed / WaitTimeout). ``abstain_threshold``
        (classification): below it, predictions come back with label None."""
        made = self._client._run(_core.create_adapted_model(
            self._client, meta_learner, inputs, targets, steps, ttl_seconds, wait,
            idempotency_key, timeout, abstain_threshold))
        return made.bind(self._client)

    def get(self, adapted_model_id: str) -> AdaptedModel:
        """One adapted model."""
        return self._client._run(_core.get_adapted_model(adapted_model_id)).bind(self._client)

    def list(self, meta_learner: str | None = None, *, page_size: int = 50) -> Iterator[AdaptedModel]:
        """Every adapted model, newest first, fetching pages of ``page_size`` as it goes."""
        cursor = None
        while True:
            items, cursor = self._client._run(_core.list_page(meta_learner, page_size, cursor))
            for item in items:
                yield item.bind(self._client)
            if not cursor:
                return

    def delete(self, adapted_model_id: str) -> None:
        """Delete an adapted model (and, when unshared, its stored state)."""
        self._client._run(_core.delete_adapted_model(adapted_model_id))

    def predict(self, model: AdaptedModel | str, inputs: Any, *, top_k: int | None = None) -> list[Any]:
        """Predictions of an adapted model (or its ID) for ``inputs``."""
        if isinstance(model, str):
            model = self.get(model)
        return self._client._run(_core.predict(self._client, model, inputs, top_k))

    def wait(self, adapted_model_id: str, *, timeout: float = 300.0, poll: float = 0.5) -> AdaptedModel:
        """Poll until the adapted model is ready; raises JobFailed or WaitTimeout."""
        return self._client._run(_core.wait_ready(adapted_model_id, timeout, poll)).bind(self._client)

    def add_examples(self, model: AdaptedModel, inputs: Any, targets: Any) -> AdaptedModel:
        """Add labelled examples to an adapted model, where the server supports it
        (MethodNotAllowed / NotFound otherwise)."""
        return self._client._run(_core.add_examples(self._client, model, inputs, targets)).bind(self._client)
