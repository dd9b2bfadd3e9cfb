"""Domain errors know nothing of HTTP; one table gives each its status, problem type and title."""

from __future__ import annotations

import ast
import inspect

from app.core import errors
from app.core.errors import MetaserveError, ModelNotReady, RateLimited, Unauthorized
from app.core.problems import PROBLEM_TYPES, problem_headers, problem_of, problem_type


def domain_errors() -> list[type[MetaserveError]]:
    return [c for _, c in inspect.getmembers(errors, inspect.isclass)
            if issubclass(c, MetaserveError) and c.__module__ == errors.__name__]


def test_every_domain_error_has_its_own_problem_type():
    abstract = {MetaserveError, errors.RetryLater}
    unmapped = [c.__name__ for c in domain_errors() if c not in abstract and c not in PROBLEM_TYPES]
    assert not unmapped
    slugs = [t.slug for t in PROBLEM_TYPES.values()]
    assert len(slugs) == len(set(slugs)), "two errors share a problem type"
    assert all(400 <= t.status < 600 for t in PROBLEM_TYPES.values())


def test_the_domain_errors_module_imports_nothing_of_http():
    tree = ast.parse(inspect.getsource(errors))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m and m.split(".")[0] in ("fastapi", "starlette", "http", "httpx")}


def test_headers_and_bodies_come_from_the_error_facts():
    assert problem_headers(Unauthorized("no key")) == {"WWW-Authenticate": "Bearer"}
    assert problem_headers(RateLimited("slow down", retry_after=7)) == {"Retry-After": "7"}

    class Row:
        id, status, progress, error = "abc", "running", 0.5, None

    waiting = ModelNotReady.for_row(Row())
    assert problem_headers(waiting) == {"Retry-After": "1", "Location": "/v1/adapted-models/abc"}
    body = problem_of(waiting, "/v1/adapted-models/abc")
    assert body["status"] == 409 and body["type"] == "urn:metaserve:problem:adapted-model-not-ready"
    assert body["adapted_model_status"] == "running" and "50%" in body["detail"]
    assert problem_type(RateLimited("x")).status == 429
