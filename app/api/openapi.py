"""The OpenAPI document as clients need it, and the API docs served without a CDN.

FastAPI files every declared error model under ``application/json`` and describes its
automatic 422 with an ``HTTPValidationError`` body this service never sends. Here every
4xx/5xx response carries only ``application/problem+json`` with the :class:`ProblemDetails`
schema (what is really sent), and the unused validation schemas are dropped.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic.json_schema import models_json_schema

from app.api.json_body import BODY_MODELS
from app.core.problems import PROBLEM_JSON

PROBLEM_REF = {"$ref": "#/components/schemas/ProblemDetails"}
DOCS_ASSETS = "/docs-assets"


def problem_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description,
                         routes=app.routes)
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            responses = operation.get("responses", {})
            for code, response in list(responses.items()):
                if not code.isdigit() or int(code) < 400:
                    continue
                response["content"] = {PROBLEM_JSON: {"schema": PROBLEM_REF}}
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    if BODY_MODELS:  # bodies that routes read themselves (app.api.json_body)
        _, definitions = models_json_schema(
            [(model, "validation") for model in sorted(BODY_MODELS, key=lambda m: m.__name__)],
            ref_template="#/components/schemas/{model}")
        for name, definition in definitions.get("$defs", {}).items():
            components.setdefault(name, definition)
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    app.openapi_schema = schema
    return schema


def serve_local_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` from assets installed with the package
    ``fastapi-offline``: the pages work with no internet access."""
    assets = files("fastapi_offline") / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")

    # the handlers read the app from the request, never from a closure: FastAPI caches each
    # endpoint's dependency model in a process-wide LRU, so a closure over ``app`` would keep
    # every app (and its engine, with every loaded learner) alive after shutdown
    @app.get("/docs", include_in_schema=False)
    def swagger(request: Request) -> HTMLResponse:
        app = request.app
        return get_swagger_ui_html(
            openapi_url=app.openapi_url, title=f"{app.title} - API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True})

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        app = request.app
        return get_redoc_html(openapi_url=app.openapi_url, title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png", with_google_fonts=False)
