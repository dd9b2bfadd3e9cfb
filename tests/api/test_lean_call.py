"""The hot routes (create, predict) run without FastAPI's dependency resolution, yet make every
check a ``/v1`` route makes, with the same problem bodies."""

from __future__ import annotations

from typing import Annotated

import fastapi.routing
import pytest
from fastapi import APIRouter, Depends, FastAPI, Header
from fastapi.testclient import TestClient

from app.api.adapted_models.router import router as adapted_models_router
from app.api.auth.service import create_key
from app.api.deps import get_engine
from app.api.lean_call import LeanCallDep, LeanCallRoute
from tests.api.helpers import sine_support

PROBLEM = "application/problem+json"


def test_create_and_predict_resolve_no_dependencies_other_routes_do(client, monkeypatch):
    calls = []
    real = fastapi.routing.solve_dependencies

    async def counting(*args, **kwargs):
        calls.append(kwargs["request"].url.path)
        return await real(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    made = client.post("/v1/adapted-models", json={"meta_learner": "sinusoid-maml", "support": sine_support()},
                       headers={"Idempotency-Key": "k-1", "Prefer": "handling=lenient"})
    assert made.status_code == 201, made.text
    ident = made.json()["id"]
    assert client.post(f"/v1/adapted-models/{ident}/predictions", json={"inputs": [[0.5]]}).status_code == 200
    assert calls == []
    assert client.get(f"/v1/adapted-models/{ident}").status_code == 200
    assert calls == [f"/v1/adapted-models/{ident}"]  # the counter does see an ordinary route


def test_header_and_path_parameters_are_validated_as_fastapi_does(client):
    too_long = client.post("/v1/adapted-models", headers={"Idempotency-Key": "k" * 1000},
                           json={"meta_learner": "sinusoid-maml", "support": sine_support()})
    assert too_long.status_code == 422 and too_long.headers["content-type"] == PROBLEM
    assert [e["loc"] for e in too_long.json()["errors"]] == [["header", "idempotency-key"]]

    bad_id = client.post(f"/v1/adapted-models/{'a' * 65}/predictions", json={"inputs": [[0.5]]})
    assert bad_id.status_code == 422 and bad_id.headers["content-type"] == PROBLEM
    assert [e["loc"] for e in bad_id.json()["errors"]] == [["path", "adapted_model_id"]]


def test_the_api_key_is_checked_before_the_body(settings):
    secured = settings.model_copy(update={"auth_enabled": True})
    from app.main import create_app

    with TestClient(create_app(secured)) as c:
        r = c.post("/v1/adapted-models", content=b"not json", headers={"content-type": "application/json"})
        assert r.status_code == 401 and r.headers["content-type"] == PROBLEM
        with c.app.state.session_factory() as session:
            _, key = create_key(session=session, tenant="t")
        r = c.post("/v1/adapted-models", content=b"not json",
                   headers={"content-type": "application/json", "authorization": f"Bearer {key}"})
        assert r.status_code == 422


def test_a_store_mismatch_refuses_create_and_predict(client):
    ident = client.post("/v1/adapted-models", json={"meta_learner": "sinusoid-maml",
                                                     "support": sine_support()}).json()["id"]
    client.app.state.store_mismatch = "the artifact store is not the one bound to this database"
    for r in (client.post("/v1/adapted-models", json={"meta_learner": "sinusoid-maml", "support": sine_support()}),
              client.post(f"/v1/adapted-models/{ident}/predictions", json={"inputs": [[0.5]]}),
              client.post(f"/v1/adapted-models/{'a' * 65}/predictions", json={"inputs": [[0.5]]})):
        # before anything else, as the router's store dependency answers on every other route
        assert r.status_code == 503 and r.json()["type"].endswith("store-mismatch")


def test_the_hot_routes_are_lean_routes():
    lean = {route.name for route in adapted_models_router.routes
            if isinstance(route, LeanCallRoute) and any(d.name == "call" for d in route.dependant.dependencies)}
    assert lean == {"create_adapted_model", "predict"}


def test_a_lean_route_with_another_dependency_is_refused_when_declared():
    router = APIRouter(route_class=LeanCallRoute)
    with pytest.raises(TypeError, match="takes only its LeanCall"):
        @router.post("/x")
        async def both(call: LeanCallDep, engine: Annotated[object, Depends(get_engine)]) -> None:
            ...


def test_routes_without_a_lean_call_stay_ordinary():
    router = APIRouter(route_class=LeanCallRoute)

    @router.get("/plain")
    async def plain(x_thing: Annotated[str | None, Header()] = None) -> dict:
        return {"thing": x_thing}

    app = FastAPI()
    app.include_router(router)
    with TestClient(app) as c:
        assert c.get("/plain", headers={"X-Thing": "yes"}).json() == {"thing": "yes"}


def test_a_lone_request_of_a_short_kind_runs_on_the_event_loop_with_the_same_answers(client, monkeypatch):
    import app.api.lean_call as lean_call

    hops = []
    real = lean_call.run_in_threadpool

    async def counting(fn, *args):
        hops.append(fn)
        return await real(fn, *args)

    monkeypatch.setattr(lean_call, "run_in_threadpool", counting)
    placement = client.app.state.call_placement
    placement.max_inline_seconds, placement.min_observed = 60.0, 2
    body = {"meta_learner": "sinusoid-maml", "support": sine_support()}
    first = [client.post("/v1/adapted-models", json=body) for _ in range(2)]
    assert [r.status_code for r in first] == [201, 201] and len(hops) == 2  # not known yet
    made = client.post("/v1/adapted-models", json=body)
    assert made.status_code == 201 and len(hops) == 2  # known short: no hand-off
    ident = made.json()["id"]
    answers = [client.post(f"/v1/adapted-models/{ident}/predictions", json={"inputs": [[0.5], [1.0]]})
               for _ in range(3)]
    assert len(hops) == 4  # the model's meta-learner is known; its predictions are not yet
    assert all(r.status_code == 200 for r in answers)
    assert answers[2].json() == answers[0].json()

    # errors raised on the event loop get the same problem bodies
    bad = client.post(f"/v1/adapted-models/{ident}/predictions", json={"inputs": [[0.5, 1.0]]})
    assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM
    assert len(hops) == 4
    other = client.post("/v1/adapted-models", json={**body, "meta_learner": "no-such-learner"})
    assert other.status_code == 404 and len(hops) == 5  # a kind never seen goes to a thread
    assert client.delete(f"/v1/adapted-models/{ident}").status_code == 204
    gone = client.post(f"/v1/adapted-models/{ident}/predictions", json={"inputs": [[0.5]]})
    assert gone.status_code == 404 and gone.headers["content-type"] == PROBLEM and len(hops) == 5

    # refusals, however quick, do not make a kind look short
    for _ in range(3):
        refused = client.post("/v1/adapted-models", json={"meta_learner": "sinusoid-hypernet", "support": {}})
        assert refused.status_code == 422
    assert len(hops) == 8
    assert client.post("/v1/adapted-models", json={**body, "meta_learner": "sinusoid-hypernet"}).status_code == 201
    assert len(hops) == 9

    placement.max_inline_seconds = 0.0  # METASERVE_INLINE_CALL_MAX_MS=0: always a thread
    assert client.post("/v1/adapted-models", json=body).status_code == 201 and len(hops) == 10
