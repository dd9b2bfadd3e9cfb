"""OpenTelemetry traces, off by default.

With ``METASERVE_OTEL_ENABLED=true`` the process installs an SDK tracer provider that exports
over OTLP/HTTP (the standard ``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_SERVICE_NAME``, ...
variables configure the exporter); FastAPI's built-in telemetry then gives every request a
server span (it reports to whatever provider is installed). The service's own
spans (``adapt``, ``predict``, ``adaptation-job``) carry the adapted-model ID and the
meta-learner as attributes, never support data; a job carries its creator's trace context,
so that the worker's span joins the request's trace across processes. Without the setting,
the OpenTelemetry API's no-op tracer makes every span free.
"""

from __future__ import annotations

from opentelemetry import context, propagate, trace

tracer = trace.get_tracer("metaserve")


def configure_tracing(enabled: bool, service_name: str = "metaserve") -> bool:
    """Install the SDK provider (once per process) when ``enabled``."""
    if not enabled:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

    if not isinstance(trace.get_tracer_provider(), TracerProvider):  # once per process
        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
    return True


def current_context_carrier() -> dict[str, str]:
    """The current trace context as W3C ``traceparent`` headers (to store with a job)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def attach_carrier(carrier: dict[str, str] | None) -> object:
    """Make a stored trace context current; returns the token for :func:`detach`."""
    return context.attach(propagate.extract(carrier or {}))


def detach(token: object) -> None:
    context.detach(token)
