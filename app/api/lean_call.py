"""One thread-pool call per request, and no dependency resolution, for the routes that carry
most of the traffic.

A plain FastAPI route with a database session, an authenticated tenant and a sync handler
hops between the event loop and the thread pool once per dependency (session, tenant, owned
row) and once more for the handler, and resolves its dependency tree on every request (a third
of the event loop's time for a small adaptation and its prediction, py-spy). A route that takes
a ``LeanCallDep`` on a router whose ``route_class`` is :class:`LeanCallRoute` is declared like
every other ``/v1`` route (same decorators, same OpenAPI document, same router-level
authentication in the document), but its handler reads what it needs from the request on the
event loop, validates only its path and header parameters (with FastAPI's own validation, so the
same 422 bodies), and then authenticates, validates the body, reads and writes the database and
calls the engine in a single worker-thread function (``LeanCall.run``), or on the event loop when
nothing else could wait for it there (``app.core.call_placement``). The ``/v1`` checks the
router's dependencies would make (the bound artifact store, the API key) are made here, in the
same order, with the same problem bodies.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request, Response
from fastapi.dependencies.utils import request_params_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.api.auth.dependencies import authenticate_request, client_address, tenant_of
from app.api.deps import require_store
from app.core.config import Settings

T = TypeVar("T")


@dataclass(frozen=True)
class LeanCall:
    state: Any  # the application's state: engine, session factory, limiters, job runner
    settings: Settings
    body: bytes
    content_type: str | None
    authorization: str | None
    client: str

    @classmethod
    async def of(cls, request: Request) -> LeanCall:
        """The request's parts, its body read in full; 503 while the artifact store is not the
        one the database is bound to (as every ``/v1`` route answers)."""
        await require_store(request)
        state = request.app.state
        headers = request.headers
        return cls(state, state.settings, await request.body(), headers.get("content-type"),
                   headers.get("authorization"), client_address(request))

    async def run(self, work: Callable[[Session, str], T], *, kind: Hashable | None = None) -> T:
        """``work(session, tenant)`` in one worker thread, after the caller's API key is checked
        (401 / 429 as every authenticated route answers); on the event loop instead when the
        application's :class:`~app.core.call_placement.CallPlacement` says calls of ``kind``
        are short and nothing else could wait for this one there (``None``: not known, a
        worker thread)."""
        placement = self.state.call_placement

        def call() -> T:
            start = time.perf_counter()
            with self.state.session_factory() as session:
                tenant = tenant_of(state=self.state, settings=self.settings, session=session,
                                   authorization=self.authorization, client=self.client)
                result = work(session, tenant)
            # only calls that did their work teach the placement: refusals are quick whatever
            # the kind, and must not make a slow kind look short
            placement.record(kind, time.perf_counter() - start)
            return result

        if placement.inline(kind):
            return call()
        return await run_in_threadpool(call)


LeanCallDep = Annotated[LeanCall, Depends(LeanCall.of)]

# the ``/v1`` routers' own dependencies, which ``LeanCall`` makes itself (older FastAPI versions
# copy them into an included route's dependencies; newer ones keep them with the inclusion)
CHECKED_BY_LEAN_CALL: frozenset[Callable[..., Any]] = frozenset({require_store, authenticate_request})


class LeanCallRoute(APIRoute):
    """A route class for routers whose hot routes take a ``LeanCallDep``: those get the lean
    handler described above; every other route of the router is an ordinary ``APIRoute``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        dependant = self.dependant
        lean = [d for d in dependant.dependencies if d.call == LeanCall.of]
        if not lean:
            return super().get_route_handler()
        others = [d.call for d in dependant.dependencies
                  if d.call != LeanCall.of and d.call not in CHECKED_BY_LEAN_CALL]
        if others or dependant.query_params or dependant.cookie_params or dependant.body_params:
            raise TypeError(f"{self.path}: a LeanCall route takes only its LeanCall, path and header "
                            "parameters (it reads its body itself)")
        call_name = lean[0].name
        endpoint = self.endpoint
        path_params, header_params = dependant.path_params, dependant.header_params

        async def handler(request: Request) -> Response:
            # FastAPI's order: dependencies (the store check, the body) before parameters
            call = await LeanCall.of(request)
            values, errors = request_params_to_args(path_params, request.path_params)
            if header_params:
                header_values, header_errors = request_params_to_args(header_params, request.headers)
                values.update(header_values)
                errors.extend(header_errors)
            if errors:
                raise RequestValidationError(errors)
            values[call_name] = call
            return await endpoint(**values)

        return handler
