"""Traces across processes: the request that queues a job and the worker span that runs it
share one trace (the context travels in the job); spans carry IDs, never support data."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.main import create_app
from tests.api.test_async_adaptation import ASYNC, BODY, wait_for

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def provider():
    current = trace.get_tracer_provider()
    if not isinstance(current, TracerProvider):
        current = TracerProvider()
        trace.set_tracer_provider(current)
    current.add_span_processor(SimpleSpanProcessor(EXPORTER))
    yield


def test_job_span_continues_the_request_trace(settings):
    EXPORTER.clear()
    with TestClient(create_app(settings.model_copy(update={"otel_enabled": True}))) as client:
        made = client.post("/v1/adapted-models", json=BODY, headers=ASYNC)
        ident = made.json()["id"]
        ready = wait_for(client, ident)
        assert ready["status"] == "ready"
        version = ready["meta_learner_version"]  # the newest sinusoid-maml
        client.post(f"/v1/adapted-models/{ident}/predictions", json={"inputs": [[0.0]]})
    spans = EXPORTER.get_finished_spans()
    job = next(s for s in spans if s.name == "adaptation-job")
    request = next(s for s in spans if s.name == "POST /v1/adapted-models" and s.kind == trace.SpanKind.SERVER)
    assert job.context.trace_id == request.context.trace_id
    assert job.attributes["metaserve.adapted_model_id"] == ident
    assert job.attributes["metaserve.meta_learner"] == f"sinusoid-maml@{version}"
    assert job.attributes["metaserve.status"] == "ready"
    tagged = [s for s in spans if s.context.trace_id == request.context.trace_id
              and s.name != "adaptation-job" and (s.attributes or {}).get("metaserve.adapted_model_id") == ident]
    assert tagged, "the request's own spans name the adapted model"
    predict = next(s for s in spans if s.name == "predict")
    assert predict.attributes["metaserve.adapted_model_id"] == ident
    exported = json.dumps([dict(s.attributes or {}) for s in spans])
    assert "1.96" not in exported and "-4.0" not in exported  # no support data in spans


def test_tracing_is_off_by_default(settings):
    """Without METASERVE_OTEL_ENABLED no provider is installed: every span is a no-op."""
    import subprocess
    import sys

    code = ("from opentelemetry import trace; from opentelemetry.sdk.trace import TracerProvider; "
            "from app.core.tracing import configure_tracing; "
            "from app.core.config import Settings; "
            "assert configure_tracing(Settings().otel_enabled) is False; "
            "assert not isinstance(trace.get_tracer_provider(), TracerProvider); print('off')")
    env = {k: v for k, v in __import__("os").environ.items() if k != "METASERVE_OTEL_ENABLED"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "off", out.stderr
