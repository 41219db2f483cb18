"""OpenTelemetry tracing (SPEC §15): one trace per request, off by default.

Off (no ``telemetry.otlp_endpoint``) a request pays one attribute test and the
OpenTelemetry SDK is never imported. On, ``Tracing`` builds the export pipeline
(``observe.tracing_export``) for the running telemetry settings on first use and
rebuilds it when a reload changes them. A request then carries a ``RequestTrace``:

- a server span, continuing the client's W3C ``traceparent`` when it sent one;
- a client span per upstream attempt, children of the server span (so retries and
  fallbacks are siblings), named and attributed after the GenAI conventions
  (``gen_ai.system``, ``gen_ai.request.model``, ``gen_ai.response.model``,
  ``gen_ai.usage.input_tokens``/``output_tokens``), whose ``traceparent`` is sent
  to the provider;
- events for the gateway's decisions (routing, limits, cache).

Spans are queued for a background thread; a full queue drops spans (counted in
``llmgw_trace_spans_dropped_total``) rather than make a request wait.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from llmgw.config.schema import TelemetryConfig
from llmgw.core import RequestContext

if TYPE_CHECKING:
    from llmgw.observe.tracing_export import Pipeline

Attribute = str | int | float | bool


class RequestTrace:
    """One request's server span, and the attempts under it."""

    __slots__ = ("_span", "_tracer", "trace_id")

    def __init__(self, tracer: Any, span: Any) -> None:
        self._tracer = tracer
        self._span = span
        self.trace_id: str = format(span.get_span_context().trace_id, "032x")

    def event(self, name: str, attributes: Mapping[str, Attribute]) -> None:
        self._span.add_event(name, dict(attributes))

    def attempt(self, provider: str, system: str, model: str, number: int) -> AttemptSpan:
        from opentelemetry import trace

        parent = trace.set_span_in_context(self._span)
        span = self._tracer.start_span(
            f"chat {model}",
            context=parent,
            kind=trace.SpanKind.CLIENT,
            attributes={
                "gen_ai.system": system,
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": model,
                "llmgw.provider": provider,
                "llmgw.attempt": number,
            },
        )
        return AttemptSpan(span)

    def finish(self, ctx: RequestContext) -> None:
        span = self._span
        span.set_attribute("http.response.status_code", ctx.status)
        values: dict[str, Attribute | None] = {
            "llmgw.request_id": ctx.request_id,
            "llmgw.key": ctx.key,
            "llmgw.endpoint": ctx.endpoint,
            "gen_ai.request.model": ctx.model,
            "llmgw.provider": ctx.provider,
            "gen_ai.response.model": ctx.upstream_model,
            "llmgw.attempts": ctx.attempts,
            "gen_ai.usage.input_tokens": ctx.prompt_tokens,
            "gen_ai.usage.output_tokens": ctx.completion_tokens,
            "llmgw.cost_usd": ctx.cost_usd,
            "error.type": ctx.error,
        }
        for name, value in values.items():
            if value is not None:
                span.set_attribute(name, value)
        if ctx.cache is not None:
            span.add_event("llmgw.cache", {"result": ctx.cache})
        if ctx.status >= 500:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, ctx.error or str(ctx.status)))
        span.end()


class AttemptSpan:
    """One upstream attempt's client span."""

    __slots__ = ("_span",)

    def __init__(self, span: Any) -> None:
        self._span = span

    def headers(self) -> dict[str, str]:
        """The W3C ``traceparent`` (and ``tracestate``) naming this span, for the provider."""
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        carrier: dict[str, str] = {}
        context = trace.set_span_in_context(self._span)
        TraceContextTextMapPropagator().inject(carrier, context=context)
        return carrier

    def end(
        self,
        *,
        status: int | None = None,
        error: str | None = None,
        response_model: str | None = None,
        usage: tuple[int | None, int | None] = (None, None),
        lost: bool = False,
    ) -> None:
        """``lost``: a hedged racer cancelled because another answered first — marked
        (``llmgw.hedge.lost``) but not an error status: the request did not fail."""
        span = self._span
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        if response_model is not None:
            span.set_attribute("gen_ai.response.model", response_model)
        if usage[0] is not None:
            span.set_attribute("gen_ai.usage.input_tokens", usage[0])
        if usage[1] is not None:
            span.set_attribute("gen_ai.usage.output_tokens", usage[1])
        if lost:
            span.set_attribute("llmgw.hedge.lost", True)
        if error is not None:
            from opentelemetry.trace import Status, StatusCode

            span.set_attribute("error.type", error)
            if not lost:
                span.set_status(Status(StatusCode.ERROR, error))
        span.end()


class Tracing:
    """The app's tracer: the export pipeline of the running telemetry settings, if any."""

    def __init__(self, on_drop: Callable[[int], None]) -> None:
        self._on_drop = on_drop
        self._settings: TelemetryConfig | None = None
        self._pipeline: Pipeline | None = None

    def start(
        self, settings: TelemetryConfig, method: str, path: str, headers: Mapping[str, str]
    ) -> RequestTrace | None:
        """The server span of a request (None when tracing is off)."""
        if settings.otlp_endpoint is None:
            return None
        pipeline = self._pipeline_for(settings)
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        parent = TraceContextTextMapPropagator().extract(headers)
        span = pipeline.tracer.start_span(
            f"{method} {path}",
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
        )
        return RequestTrace(pipeline.tracer, span)

    def close(self) -> None:
        """Export what is queued (bounded by the export timeout) and stop."""
        pipeline, self._pipeline, self._settings = self._pipeline, None, None
        if pipeline is not None:
            pipeline.close(wait=True)

    def _pipeline_for(self, settings: TelemetryConfig) -> Pipeline:
        pipeline = self._pipeline
        if pipeline is None or settings != self._settings:
            from llmgw.observe.tracing_export import Pipeline

            if pipeline is not None:
                pipeline.close(wait=False)  # a reload changed the settings
            pipeline = self._pipeline = Pipeline(settings, self._on_drop)
            self._settings = settings
        return pipeline


def note(ctx: RequestContext, name: str, **attributes: Attribute) -> None:
    """A decision as an event on the request's span; nothing when tracing is off."""
    trace = ctx.trace
    if trace is not None:
        trace.event(name, attributes)


def start_attempt(
    ctx: RequestContext, provider: str, system: str, model: str
) -> AttemptSpan | None:
    trace = ctx.trace
    if not isinstance(trace, RequestTrace):
        return None
    return trace.attempt(provider, system, model, ctx.attempts)


def answer_model(response: web.StreamResponse) -> str | None:
    """The ``model`` a whole JSON answer names (a stream's is not parsed here)."""
    body = response.body if isinstance(response, web.Response) else None
    if not isinstance(body, bytes):
        return None
    try:
        model = orjson.loads(body).get("model")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return model if isinstance(model, str) else None
