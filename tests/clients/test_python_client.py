"""The Python client against a real server: the whole surface, retries, idempotency, pages,
typed errors, and its models held against the server's OpenAPI document."""

from __future__ import annotations

import asyncio
import math

import httpx
import numpy as np
import pytest
from metaserve_client import (
    AsyncClient,
    ClassPrediction,
    Client,
    IncompatibleServer,
    MetaLearner,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
    ValidationError,
)
from metaserve_client import models as client_models
from PIL import Image, ImageDraw

pytestmark = pytest.mark.slow

XS = [[-4.0], [-2.0], [0.0], [1.5], [3.0]]
YS = [2 * math.sin(x[0] - 0.5) for x in XS]


def glyph(k: int) -> Image.Image:
    im = Image.new("L", (105, 105), 255)
    d = ImageDraw.Draw(im)
    [lambda: d.line((52, 15, 52, 90), 0, 8), lambda: d.line((15, 52, 90, 52), 0, 8),
     lambda: d.ellipse((20, 20, 85, 85), outline=0, width=8)][k]()
    return im


def test_the_whole_surface(live_server, tmp_path, monkeypatch):
    monkeypatch.setenv("METASERVE_URL", live_server.url)
    monkeypatch.setenv("METASERVE_API_KEY", live_server.key)
    with Client() as client:  # URL and key from the environment
        assert client.server_version().startswith("0.")
        names = {m.name for m in client.meta_learners.list()}
        assert {"sinusoid-maml", "omniglot-protonet"} <= names
        maml = client.meta_learners.get("omniglot-maml@1.0.0")
        assert isinstance(maml, MetaLearner) and maml.version == "1.0.0" and len(maml.versions) >= 2

        # regression, from lists and from numpy arrays
        model = client.adapted_models.create("sinusoid-maml", np.array(XS), np.array(YS), steps=10)
        assert model.ready and model.adaptation.steps == 10
        values = model.predict([[-3.0], [0.5]])
        assert all(isinstance(v, float) for v in values)
        assert abs(values[1] - 2 * math.sin(0.0)) < 1.0

        # images: a PIL image, a file path (str and Path), numpy pixels in the model's shape
        path = tmp_path / "ring.png"
        glyph(2).save(path)
        images = client.adapted_models.create(
            "omniglot-protonet", [glyph(0), glyph(1), str(path)], ["bar", "dash", "ring"])
        preds = images.predict([glyph(1), path, np.zeros((28, 28))], top_k=2)
        assert all(isinstance(p, ClassPrediction) and len(p.probabilities) == 2 for p in preds)
        assert [p.label for p in preds[:2]] == ["dash", "ring"]

        # read, list, delete
        assert client.adapted_models.get(model.id).id == model.id
        assert {m.id for m in client.adapted_models.list()} == {model.id, images.id}
        assert [m.id for m in client.adapted_models.list(meta_learner="sinusoid-maml")] == [model.id]
        model.delete()
        with pytest.raises(NotFound) as missing:
            client.adapted_models.get(model.id)
        assert missing.value.status == 404 and missing.value.type.endswith("adapted-model-not-found")


def test_photos_from_paths_and_pil_images(live_server):
    """The walk-through's photos: file paths (sent as their JPEG bytes) and PIL images (a large
    RGB image goes as JPEG, a small or grey one as PNG)."""
    from tests.conftest import REPO

    photos = REPO / "examples" / "photos"
    with Client(live_server.url, api_key=live_server.key) as client:
        model = client.adapted_models.create(
            "photo-protonet", [photos / f"{c}-{i}.jpg" for c in ("cat", "coffee") for i in (1, 2, 3)],
            ["cat"] * 3 + ["coffee"] * 3)
        cat = Image.open(photos / "query-cat.jpg")
        preds = model.predict([str(photos / "query-coffee.jpg"), cat, cat.convert("L").resize((200, 150))])
        assert [p.label for p in preds] == ["coffee", "cat", "cat"]


def test_typed_errors(live_server):
    with Client(live_server.url, api_key="ms_wrong_key") as client, pytest.raises(Unauthorized):
        client.meta_learners.list()
    with Client(live_server.url, api_key=live_server.key) as client:
        with pytest.raises(ValidationError) as bad:
            client.adapted_models.create("sinusoid-maml", [[1.0], [2.0]], [1.0])
        assert bad.value.field == "support.inputs" and "targets" in bad.value.detail
        with pytest.raises(ValidationError) as typed:
            client.adapted_models.create("sinusoid-maml", XS, YS, steps=-1)
        assert typed.value.field == "options.steps"
        with pytest.raises(NotFound):
            client.meta_learners.get("no-such-learner")


def test_pagination_walks_every_page(live_server):
    with Client(live_server.url, api_key=live_server.key) as client:
        made = {client.adapted_models.create("sinusoid-maml", XS, [y * (1 + i / 10) for y in YS]).id
                for i in range(5)}
        listed = [m.id for m in client.adapted_models.list(page_size=2)]
        assert len(listed) == 5 and set(listed) == made  # three pages


def test_retries_honour_retry_after_on_429_and_503(live_server, monkeypatch):
    engine = live_server.app.state.engine
    real = engine.adapt
    refusals = [RateLimitedProblem(), OverloadedProblem()]

    def flaky(task, tenant, **options):
        if refusals:
            raise refusals.pop(0)
        return real(task, tenant=tenant, **options)

    monkeypatch.setattr(engine, "adapt", flaky)
    with Client(live_server.url, api_key=live_server.key) as client:
        made = client.adapted_models.create("sinusoid-maml", XS, YS)
        assert made.ready and not refusals
    refusals[:] = [OverloadedProblem()] * 3
    with Client(live_server.url, api_key=live_server.key, max_retries=1) as client:
        with pytest.raises(ServiceUnavailable) as gave_up:
            client.adapted_models.create("sinusoid-maml", XS, YS)
        assert gave_up.value.retry_after == 1.0


def RateLimitedProblem():  # noqa: N802 - builds the server's own problem
    from app.core.errors import RateLimited as ServerRateLimited

    return ServerRateLimited("forced for the test", 1)


def OverloadedProblem():  # noqa: N802
    from app.core.errors import Overloaded

    return Overloaded("forced for the test", 1)


class DropFirstCreateResponse(httpx.HTTPTransport):
    """Forwards every request; the first create's response is 'lost' after the server
    committed it, as a dropped connection would."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0
        self.keys: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "POST" and request.url.path == "/v1/adapted-models":
            self.keys.append(request.headers["idempotency-key"])
            if not self.dropped:
                response.read()
                self.dropped += 1
                raise httpx.ReadError("connection dropped after the server committed", request=request)
        return response


def test_a_create_whose_response_was_lost_is_retried_without_a_duplicate(live_server):
    transport = DropFirstCreateResponse()
    with Client(live_server.url, api_key=live_server.key, transport=transport) as client:
        made = client.adapted_models.create("sinusoid-maml", XS, YS)
        assert transport.dropped == 1 and len(transport.keys) == 2 and len(set(transport.keys)) == 1
        assert [m.id for m in client.adapted_models.list()] == [made.id]


def test_an_incompatible_server_fails_clearly(live_server, monkeypatch):
    monkeypatch.setattr("metaserve_client._core.SUPPORTED_MAJOR", 7)
    with Client(live_server.url, api_key=live_server.key) as client:
        with pytest.raises(IncompatibleServer, match="7.x"):
            client.meta_learners.list()


def test_async_client(live_server):
    async def main():
        async with AsyncClient(live_server.url, api_key=live_server.key) as client:
            learners = await client.meta_learners.list()
            made = await client.adapted_models.create("sinusoid-maml", XS, YS)
            values = await made.predict([[0.5]])
            ids = [m.id async for m in client.adapted_models.list(page_size=1)]
            await client.adapted_models.delete(made.id)
            with pytest.raises(NotFound):
                await client.adapted_models.get(made.id)
            return learners, values, ids, made

    learners, values, ids, made = asyncio.run(main())
    assert learners and isinstance(values[0], float) and ids == [made.id]


def test_rate_limited_errors_carry_retry_after(live_server, monkeypatch):
    limiter = live_server.app.state.rate_limiter
    monkeypatch.setattr(limiter, "acquire", lambda key: 2.5)
    with Client(live_server.url, api_key=live_server.key, max_retries=0) as client:
        with pytest.raises(RateLimited) as limited:
            client.meta_learners.list()
        assert limited.value.retry_after == 3.0 and limited.value.status == 429


def schema_fields(openapi: dict, name: str) -> tuple[set[str], set[str]]:
    schema = openapi["components"]["schemas"][name]
    return set(schema["properties"]), set(schema.get("required", []))


@pytest.mark.parametrize("client_model, server_schema", [
    (client_models.MetaLearner, "MetaLearnerRead"),
    (client_models.InputSpec, "InputSpec"),
    (client_models.VersionSummary, "VersionSummary"),
    (client_models.AdaptedModel, "AdaptedModelRead"),
    (client_models.AdaptationReport, "AdaptationReport"),
    (client_models.ClassPrediction, "ClassPrediction"),
])
def test_client_models_match_the_openapi_document(live_server, client_model, server_schema):
    openapi = httpx.get(f"{live_server.url}/openapi.json").json()
    properties, required = schema_fields(openapi, server_schema)
    mine = set(client_model.model_fields)
    optional_extras = {"progress", "problem"}  # for servers that run asynchronous jobs
    assert mine - optional_extras <= properties, f"client fields the server does not send: {mine - properties}"
    missing = {f for f in required if f not in mine}
    assert not missing, f"server fields the client does not read: {missing}"
    # a queued job has no report yet, so the client reads these leniently
    lenient = {"status", "adaptation"}
    for name in required & mine:
        assert client_model.model_fields[name].is_required() or name in lenient, name


def test_add_examples_fails_clearly_where_the_family_cannot(live_server):
    from metaserve_client.errors import Conflict

    with Client(live_server.url, api_key=live_server.key) as client:
        made = client.adapted_models.create("sinusoid-maml", XS, YS)
        with pytest.raises(Conflict, match="cannot add examples"):
            made.add_examples([[1.0]], [0.5])
        assert made.predict([[0.5]])  # the model is untouched
