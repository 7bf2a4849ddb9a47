"""OpenTelemetry tracing, off unless `BLUEGREEN_TRACING` is set.

The exporter is OTLP over HTTP, configured by the standard `OTEL_*` variables, which the SDK
reads itself (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`,
`OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`...). Spans:

- `{method} {route}` (server): one per HTTP request, continuing a W3C `traceparent`; a
  request no route matched (the router's 404 or 405) is `{method}` alone, with its status;
- `predict` → `slot`: the request path (`serving/predictor.py`), one `slot` span per attempt,
  so a candidate's failure answered from live shows as two;
- `deploy` → `load`, `smoke`, `promote` → `drain`, `free`: the lifecycle
  (`serving/lifecycle.py`), with error status when a step fails.

Off, the request path pays one module-attribute check (`ENABLED`) per step: no span objects,
no context attach/detach, no middleware. The API's no-op tracer would still build a context
manager, a non-recording span and a context token per step.

Spans are opened and ended on the event loop only; work handed to threads runs inside a span
that the loop holds, so no span context has to cross into a thread. The provider is this
module's own, not the process-global one, so an app built twice in one process (tests) or a
model's own tracing does not fight over it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from bluegreen.api.request_id import current_request_id

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

ENABLED = False
"""Read by the request path before it does any tracing work."""

TRACER_NAME = "bluegreen"
DEFAULT_SERVICE_NAME = "bluegreen"
VERSION = "bluegreen.model.version"
SLOT = "bluegreen.slot"
MODEL = "bluegreen.model.name"
TEXTS = "bluegreen.texts"
REQUEST_ID = "bluegreen.request_id"

_provider: TracerProvider | None = None
_tracer: trace.Tracer = trace.NoOpTracer()

AttributeValue = str | bool | int | float


def enable(exporter: SpanExporter | None = None, *, batch: bool = True) -> None:
    """Start exporting spans: OTLP/HTTP by default, or to ``exporter``. Already on, it keeps
    the exporter it has (a test's, set up before the app starts)."""
    # Module globals, not an object: the request path reads one attribute to learn it is off.
    global ENABLED, _provider, _tracer  # noqa: PLW0603
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    if _provider is not None:
        return
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    resource = Resource.create()
    # OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) wins; the SDK's
    # placeholder "unknown_service" would make every deployment's traces anonymous.
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(
        BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    )
    _provider, _tracer = provider, provider.get_tracer(TRACER_NAME)
    ENABLED = True


def shutdown() -> None:
    """Export what is buffered and stop. Blocking (an HTTP export): call it off the loop."""
    global ENABLED, _provider, _tracer
    provider, _provider = _provider, None
    ENABLED, _tracer = False, trace.NoOpTracer()
    if provider is not None:
        provider.shutdown()


def _clean(attributes: Mapping[str, AttributeValue | None]) -> dict[str, AttributeValue]:
    return {key: value for key, value in attributes.items() if value is not None}


def span(
    name: str, attributes: Mapping[str, AttributeValue | None] | None = None
) -> contextlib.AbstractContextManager[trace.Span]:
    """A child of the current span, current while the block runs; an exception leaving the
    block is recorded and sets error status. Off, a shared non-recording span."""
    if not ENABLED:
        return contextlib.nullcontext(trace.INVALID_SPAN)
    return _tracer.start_as_current_span(name, attributes=_clean(attributes or {}))


def fail(span: trace.Span, reason: str) -> None:
    """Error status for a step that failed without raising (a rejected version)."""
    span.set_status(Status(StatusCode.ERROR, reason[:500]))


def set_attributes(span: trace.Span, attributes: Mapping[str, AttributeValue | None]) -> None:
    span.set_attributes(_clean(attributes))


class TracingMiddleware:
    """One server span per HTTP request, continuing the caller's `traceparent`.

    Installed only when tracing is on, around the whole app (`app.py`), so that a request the
    router refuses (404, 405) has a span too: inside Litestar's `middleware=` it would run
    only for matched routes. Routing happens inside it, so the span is renamed afterwards by
    the route template the router left in the scope, never the raw path; an unmatched request
    keeps the bare method, as OpenTelemetry's HTTP conventions ask. Exception handlers run
    inside it too, so errors arrive as responses whose status it reads. It sits inside the
    request-id middleware, whose id it records."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not ENABLED or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope["headers"]
        }
        parent = propagate.extract(headers)
        method = scope["method"]
        server_span = _tracer.start_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=_clean({"http.request.method": method, "url.path": scope["path"],
                               REQUEST_ID: current_request_id()}),
        )  # fmt: skip
        token = context.attach(trace.set_span_in_context(server_span, parent))

        async def traced_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                server_span.set_attribute("http.response.status_code", status)
                if status >= 500:  # a 4xx is the client's error, not the server's
                    server_span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
            await send(message)

        try:
            await self.app(scope, receive, traced_send)
        except BaseException as exc:
            server_span.record_exception(exc)
            server_span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            route = scope.get("path_template")  # set by the router once a route matched
            if route:
                server_span.update_name(f"{method} {route}")
                server_span.set_attribute("http.route", route)
            context.detach(token)
            server_span.end()
