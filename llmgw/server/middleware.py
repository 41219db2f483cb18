"""Request id, error rendering, access log and request metrics — nothing domain-specific.

Every request gets a ``RequestContext``; whatever the handler raises leaves as a
JSON error in the caller's dialect (OpenAI's, or Anthropic's on ``/v1/messages``),
never as a traceback; and every request ends in one access log line.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from llmgw.core import RequestContext
from llmgw.errors import GatewayError, InternalError, InvalidRequest, NotFound, RequestTooLarge
from llmgw.server import cors
from llmgw.server.appkeys import ACCOUNTING, CONTEXT, METRICS, STORE, TRACING

log = logging.getLogger(__name__)

# A response the client cut short: it left, it read nothing for server.write_timeout,
# or (following a coalesced request) it fell too far behind the stream (499 for all).
CLIENT_FAULTS = frozenset({"client_disconnected", "client_stalled", "client_lagged"})
SIMPLE_PATHS = frozenset({"/api/chat", "/api/chat/stream", "/gateway/query"})
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
# What a header value may not carry (CR/LF would split the response head).
_UNSAFE_HEADER = re.compile(r"[\x00-\x1f\x7f]")


class RequestIds:
    """Unique request ids without a system call each: a random prefix for the process,
    then a counter (ids need to be unique, not unguessable)."""

    __slots__ = ("_count", "_prefix")

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._count = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._count):08x}"


IDS = web.AppKey("request_ids", RequestIds)


class MethodNotAllowed(InvalidRequest):
    status = 405
    code = "method_not_allowed"


@web.middleware
async def gateway_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    given = request.headers.get("X-Request-ID", "")
    ctx = RequestContext(
        request_id=given if given and _REQUEST_ID.fullmatch(given) else request.app[IDS].next(),
        started=time.perf_counter(),
        surface="anthropic" if request.path.startswith("/v1/messages") else "openai",
    )
    request[CONTEXT] = ctx
    store = request.app.get(STORE)
    if store is not None:  # tracing: one attribute test while telemetry is off
        telemetry = store.current.config.telemetry
        if telemetry.otlp_endpoint is not None:
            ctx.trace = request.app[TRACING].start(
                telemetry, request.method, request.path, request.headers
            )
    if request.method == "OPTIONS":
        preflight = cors.preflight(request, _origins(request))
        if preflight is not None:
            return preflight
    app = request.app
    metrics = app[METRICS]
    path = request.path
    client_api = (path.startswith("/v1/") and not path.startswith("/v1/health")) or (
        path in SIMPLE_PATHS
    )
    if client_api:
        metrics.inflight.inc()
    try:
        response = await handler(request)
        # a write that found the client gone (or stalled) ends the handler without a
        # cancellation
        ctx.status = 499 if ctx.error in CLIENT_FAULTS else response.status
        return response
    except GatewayError as exc:
        return _render(ctx, exc)
    except web.HTTPException as exc:
        return _render(ctx, _from_http(request, exc))
    except ConnectionResetError:
        # a write (a stream's head, say) found the client gone before aiohttp noticed
        # and cancelled the handler: the same 499 as a cancellation, quietly; aiohttp
        # drops this answer, as nobody is left to read it
        ctx.error = ctx.error or "client_disconnected"
        ctx.status = 499
        return web.Response(status=499)
    except asyncio.CancelledError:
        if not ctx.delivered:  # the client went away before its answer was whole
            ctx.status = 499
            ctx.error = ctx.error or "client_disconnected"
        raise
    except Exception:
        log.exception("unexpected error (request id %s)", ctx.request_id)
        ctx.error = "internal_error"
        if ctx.first_byte is not None:
            raise  # the response has started: nothing more can be said to the client
        return _render(ctx, InternalError(f"Internal error (request id {ctx.request_id})"))
    finally:
        if client_api:
            metrics.inflight.dec()
        if ctx.trace is not None:
            ctx.trace.finish(ctx)
        app[ACCOUNTING].add(ctx, client_api)


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the gateway's headers on every response, streams included.

    Gathered into one list and set with one ``update`` (each header set on its own
    costs a call into multidict and a scan of the response's headers)."""
    ctx = request.get(CONTEXT)
    if ctx is None:
        return
    request_id = ctx.request_id
    pairs = [("X-Request-ID", request_id)]
    if ctx.surface == "anthropic":  # Anthropic's name for it; its SDK reads _request_id here
        pairs.append(("request-id", request_id))
    origins = _origins(request)
    if origins:  # CORS headers come next: set what is gathered so far first
        response.headers.update(pairs)
        pairs = []
        cors.apply(request, response, origins)
    provider, model = ctx.provider, ctx.upstream_model
    if provider is not None and _safe(provider):
        pairs.append(("X-LLMGW-Provider", provider))
    if model is not None and _safe(model):
        pairs.append(("X-LLMGW-Model", model))
    if ctx.attempts:
        pairs.append(("X-LLMGW-Attempts", str(ctx.attempts)))
    if ctx.dropped:
        pairs.append(("X-LLMGW-Dropped-Params", ", ".join(ctx.dropped)))
    if ctx.cache is not None:
        pairs.append(("X-Cache", ctx.cache))
    if ctx.cache_match is not None:
        pairs.append(("X-Cache-Match", ctx.cache_match))
    if ctx.cache_similarity is not None:
        pairs.append(("X-Cache-Similarity", f"{ctx.cache_similarity:.2f}"))
    if ctx.strategy is not None:
        routing = ctx.routing_line()
        if routing is not None and _safe(routing):
            pairs.append(("X-LLMGW-Routing", routing))
    if ctx.ratelimit is not None:
        pairs += ctx.ratelimit()
    if pairs:
        response.headers.update(pairs)


def _safe(value: str) -> bool:
    """Whether ``value`` may go in a header as it is (no CR, LF or other control
    character). ``isprintable`` answers most at C speed; the pattern decides the rest
    (non-ASCII text that is not printable, yet no control character)."""
    return value.isprintable() or not _UNSAFE_HEADER.search(value)


def _origins(request: web.Request) -> tuple[str, ...]:
    store = request.app.get(STORE)
    return () if store is None else store.current.config.server.cors_origins


def _render(ctx: RequestContext, error: GatewayError) -> web.Response:
    ctx.status = error.status
    ctx.error = ctx.error or error.code
    body = error.anthropic_body() if ctx.surface == "anthropic" else error.openai_body()
    return web.Response(
        body=body, status=error.status, content_type="application/json", headers=error.headers
    )


def _from_http(request: web.Request, exc: web.HTTPException) -> GatewayError:
    if exc.status == 404:
        return NotFound(f"Unknown path {request.path}")
    if exc.status == 405:
        allow = exc.headers.get("Allow", "")
        return MethodNotAllowed(
            f"Method {request.method} is not allowed on {request.path}",
            headers={"Allow": allow} if allow else None,
        )
    if exc.status == 413:
        return RequestTooLarge("The request body is too large")
    if exc.status < 500:
        return InvalidRequest(exc.reason)
    return InternalError(f"Internal error (request id {request[CONTEXT].request_id})")
