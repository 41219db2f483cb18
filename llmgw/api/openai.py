"""The OpenAI-compatible client surface: chat, completions, embeddings, models.

``handle`` reads as the request's itinerary: snapshot → key → body → call →
allowlist → targets → limits → cache → forward (fallback chain) → account.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from llmgw.api.calls import check_model, parse_call, prompt_excerpt
from llmgw.auth.keys import allow_model, authenticate, may_use
from llmgw.cache import serve as caching
from llmgw.core import Call, Endpoint, Principal
from llmgw.errors import ModelNotFound
from llmgw.forward import forward
from llmgw.limits.clientip import client_address
from llmgw.runtime import Runtime
from llmgw.server.appkeys import BODIES, CACHE, CONTEXT, KEYRING, LIMITER, METRICS, STORE, USAGE


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await handle(request, "chat")


async def completions(request: web.Request) -> web.StreamResponse:
    return await handle(request, "completions")


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await handle(request, "embeddings")


async def handle(request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
    """The request's itinerary, shared by every client surface."""
    ctx = request[CONTEXT]
    ctx.endpoint = endpoint
    app = request.app
    runtime = app[STORE].current  # this request's snapshot, to the end
    config = runtime.config
    principal = authenticate(request.headers, config.auth, app[KEYRING])
    ctx.key = principal.name
    async with app[BODIES].receive(request, config.server) as raw:
        call = parse_call(endpoint, raw, request.headers)
        return await _serve(request, runtime, principal, call)


async def _serve(
    request: web.Request, runtime: Runtime, principal: Principal, call: Call
) -> web.StreamResponse:
    ctx = request[CONTEXT]
    app = request.app
    config = runtime.config
    ctx.client_ip = client_address(
        request.remote, request.headers.getall("X-Forwarded-For", ()), runtime.trusted_proxies
    )
    ctx.model = call.model
    ctx.model_label = runtime.router.label(call.model)
    if config.logging.log_prompts:
        ctx.prompt = prompt_excerpt(call)
    allow_model(principal, call.model)
    targets = runtime.router.resolve(call.model)  # 404 before limits and cache
    admission = await app[LIMITER].admit(config.limits, principal, call, targets, ctx)
    metrics = app[METRICS]
    response = None
    try:
        response = await caching.serve(
            request,
            ctx,
            runtime,
            call,
            app[CACHE],
            metrics,
            lambda record: forward(request, ctx, runtime, call, targets, metrics, record),
            refresh=principal.cache_refresh,
        )
        return response
    finally:  # also on errors and when the client went away
        spend = app[USAGE].record(ctx, call, response, config.prices)
        await app[LIMITER].settle(admission, spend)


serve_call = _serve  # the itinerary from an already parsed call (api/simple.py)


async def list_models(request: web.Request) -> web.Response:
    """The names this key may use: aliases, then models listed by enabled providers."""
    runtime = request.app[STORE].current
    principal = authenticate(request.headers, runtime.config.auth, request.app[KEYRING])
    router = runtime.router
    data = [
        _model_entry(name, router.owners(name))
        for name in router.names()
        if may_use(principal, name)
        or any(may_use(principal, f"{owner}/{name}") for owner in router.owners(name))
    ]
    return web.Response(
        body=orjson.dumps({"object": "list", "data": data}), content_type="application/json"
    )


async def get_model(request: web.Request) -> web.Response:
    runtime = request.app[STORE].current
    principal = authenticate(request.headers, runtime.config.auth, request.app[KEYRING])
    model = request.match_info["model"]
    check_model(model)
    router = runtime.router
    provider, _, upstream_model = model.partition("/")
    known = model in router.names() or (
        provider in runtime.providers and upstream_model in router.names()
    )
    if not known or not may_use(principal, model):  # as OpenAI: no access reads as absent
        raise ModelNotFound(f"The model '{model}' does not exist", param="model")
    owners = router.owners(upstream_model if provider in runtime.providers else model)
    return web.Response(
        body=orjson.dumps(_model_entry(model, owners)), content_type="application/json"
    )


def _model_entry(name: str, owners: tuple[str, ...]) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": 0,
        "owned_by": owners[0] if owners else "llmgw",
    }
