"""The asynchronous client: the same surface as :class:`Client`, awaited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx

from metaserve_client import _core
from metaserve_client._core import Op, Request, Response, Sleep
from metaserve_client.client import TRANSIENT, _retry_after, _to_response
from metaserve_client.errors import ConnectionFailed
from metaserve_client.models import AdaptedModel, MetaLearner


class AsyncClient:
    """``async with AsyncClient(...) as client:``; see :class:`metaserve_client.Client`."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *,
                 timeout: float = 60.0, max_retries: int = 4,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        url, key = _core.settings(base_url, api_key)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout, transport=transport)
        self.max_retries = max_retries
        self._kinds: dict[str, str] = {}
        self._checked = False
        self.meta_learners = AsyncMetaLearners(self)
        self.adapted_models = AsyncAdaptedModels(self)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def server_version(self) -> str:
        """The server's API version; raises IncompatibleServer on another major version."""
        body = (await self._send(Request("GET", "/openapi.json"))).body
        _core.check_version(body)
        self._checked = True
        return str(body["info"]["version"])

    async def _run(self, op: Op) -> Any:
        if not self._checked:
            await self.server_version()
        try:
            step = next(op)
            while True:
                if isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                    step = op.send(None)
                else:
                    step = op.send(await self._send_with_retries(step))
        except StopIteration as done:
            return done.value

    async def _send_with_retries(self, request: Request) -> Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._send(request)
            except TRANSIENT as exc:
                if attempt > self.max_retries:
                    raise ConnectionFailed(f"{request.method} {request.path}: {exc}") from exc
                await asyncio.sleep(_core.backoff(attempt, None))
                continue
            if response.status in _core.RETRY_STATUSES and attempt <= self.max_retries:
                await asyncio.sleep(_core.backoff(attempt, _retry_after(response)))
                continue
            return response

    async def _send(self, request: Request) -> Response:
        r = await self._http.request(request.method, request.path, params=request.params,
                                     json=request.json, headers=request.headers)
        return _to_response(r)


class AsyncMetaLearners:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def list(self) -> list[MetaLearner]:
        """Every meta-learner the server serves (the newest version of each)."""
        return await self._client._run(_core.list_meta_learners())

    async def get(self, name: str) -> MetaLearner:
        """One meta-learner: ``name`` (newest) or ``name@version``."""
        return await self._client._run(_core.get_meta_learner(name))


class AsyncAdaptedModels:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(self, meta_learner: str, inputs: Any, targets: Any, *, steps: int | str | None = None,
                     ttl_seconds: int | None = None, wait: bool = True,
                     idempotency_key: str | None = None, timeout: float = 300.0,
                     abstain_threshold: float | None = None) -> AdaptedModel:
        """Adapt ``meta_learner`` to a support set (see ``Client.adapted_models.create``)."""
        made = await self._client._run(_core.create_adapted_model(
            self._client, meta_learner, inputs, targets, steps, ttl_seconds, wait,
            idempotency_key, timeout, abstain_threshold))
        return made.bind(self._client)

    async def get(self, adapted_model_id: str) -> AdaptedModel:
        """One adapted model."""
        return (await self._client._run(_core.get_adapted_model(adapted_model_id))).bind(self._client)

    async def list(self, meta_learner: str | None = None, *,
                   page_size: int = 50) -> AsyncIterator[AdaptedModel]:
        """Every adapted model, newest first, page by page (``async for``)."""
        cursor = None
        while True:
            items, cursor = await self._client._run(_core.list_page(meta_learner, page_size, cursor))
            for item in items:
                yield item.bind(self._client)
            if not cursor:
                return

    async def delete(self, adapted_model_id: str) -> None:
        """Delete an adapted model."""
        await self._client._run(_core.delete_adapted_model(adapted_model_id))

    async def predict(self, model: AdaptedModel | str, inputs: Any, *, top_k: int | None = None) -> list[Any]:
        """Predictions of an adapted model (or its ID) for ``inputs``."""
        if isinstance(model, str):
            model = await self.get(model)
        return await self._client._run(_core.predict(self._client, model, inputs, top_k))

    async def wait(self, adapted_model_id: str, *, timeout: float = 300.0, poll: float = 0.5) -> AdaptedModel:
        """Poll until the adapted model is ready; raises JobFailed or WaitTimeout."""
        return (await self._client._run(_core.wait_ready(adapted_model_id, timeout, poll))).bind(self._client)

    async def add_examples(self, model: AdaptedModel, inputs: Any, targets: Any) -> AdaptedModel:
        """Add labelled examples, where the server supports it."""
        made = await self._client._run(_core.add_examples(self._client, model, inputs, targets))
        return made.bind(self._client)
