"""Contract details that generated clients and careful users depend on."""

from __future__ import annotations

import base64

from tests.api.helpers import sine_support

PROBLEM = "application/problem+json"


def test_bad_cursor_is_named_as_a_cursor(client):
    for cursor in ("not-base64!", base64.urlsafe_b64encode(b"2026-01-01T00:00:00|abc").decode(),
                   base64.urlsafe_b64encode(b"garbage").decode()):
        r = client.get("/v1/adapted-models", params={"cursor": cursor})
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
        assert r.json()["type"].endswith("invalid-cursor") and "cursor" in r.json()["detail"]


def test_list_limit_is_validated_not_silently_cut(client):
    assert client.get("/v1/adapted-models", params={"limit": 200}).status_code == 200
    r = client.get("/v1/adapted-models", params={"limit": 201})
    assert r.status_code == 422 and "200" in r.json()["detail"]
    schema = client.get("/openapi.json").json()
    limit = next(p for p in schema["paths"]["/v1/adapted-models"]["get"]["parameters"]
                 if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 200


def test_405_names_every_allowed_method(client):
    made = client.post("/v1/adapted-models", json={"meta_learner": "sinusoid-maml",
                                                   "support": sine_support()}).json()
    r = client.put(f"/v1/adapted-models/{made['id']}/predictions", json={})
    assert r.status_code == 405 and r.headers["content-type"] == PROBLEM
    assert set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}


def test_openapi_declares_problem_bodies_bearer_and_typed_predictions(client):
    schema = client.get("/openapi.json").json()
    for path, item in schema["paths"].items():
        for method, op in item.items():
            for code, response in op["responses"].items():
                if int(code) >= 400:
                    assert list(response["content"]) == [PROBLEM], (path, method, code)
                    assert response["content"][PROBLEM]["schema"]["$ref"].endswith("/ProblemDetails")
    components = schema["components"]
    assert "HTTPValidationError" not in components["schemas"]
    assert components["securitySchemes"]["ApiKey"] == {
        "type": "http", "scheme": "bearer", "description": components["securitySchemes"]["ApiKey"]["description"]}
    create = schema["paths"]["/v1/adapted-models"]["post"]
    assert create["security"] == [{"ApiKey": []}]
    assert "security" not in schema["paths"]["/healthz"]["get"]
    examples = create["requestBody"]["content"]["application/json"]["examples"]
    assert {"regression", "image"} <= set(examples)
    predicted = schema["paths"]["/v1/adapted-models/{adapted_model_id}/predictions"]["post"]
    body = predicted["responses"]["200"]["content"]["application/json"]["schema"]
    assert body["discriminator"]["propertyName"] == "task_type"
    assert {"classification", "regression"} == set(body["discriminator"]["mapping"])
    gone = predicted["responses"]["410"]
    assert gone["content"][PROBLEM]


def test_docs_are_served_without_a_cdn(client):
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assert "cdn" not in html.lower() and "/docs-assets/" in html
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert client.get("/docs-assets/redoc.standalone.js").status_code == 200


def test_predictions_carry_their_task_type(client):
    made = client.post("/v1/adapted-models", json={"meta_learner": "sinusoid-maml",
                                                   "support": sine_support()}).json()
    r = client.post(f"/v1/adapted-models/{made['id']}/predictions", json={"inputs": [[0.0]]})
    assert r.json()["task_type"] == "regression" and isinstance(r.json()["predictions"][0], float)


def test_metrics_carry_no_tenant_identifiers(settings):
    from fastapi.testclient import TestClient

    from app.api.auth.service import create_key
    from app.main import create_app

    with TestClient(create_app(settings.model_copy(update={"auth_enabled": True}))) as c:
        with c.app.state.session_factory() as session:
            _, key = create_key(session=session, tenant="tenant-secret-name")
        headers = {"Authorization": f"Bearer {key}"}
        made = c.post("/v1/adapted-models", headers=headers,
                      json={"meta_learner": "sinusoid-maml", "support": sine_support()}).json()
        c.post(f"/v1/adapted-models/{made['id']}/predictions", headers=headers, json={"inputs": [[0.0]]})
        c.get("/v1/adapted-models/some-unknown-path-segment", headers=headers)
        text = c.get("/metrics").text
        assert "tenant-secret-name" not in text and made["id"] not in text
        assert "some-unknown-path-segment" not in text
        assert 'route="/v1/adapted-models/{adapted_model_id}/predictions"' in text
