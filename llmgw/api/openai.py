"""The OpenAI-compatible client surface: chat, completions, embeddings, responses,
moderations, images, speech, models.

``handle`` reads as the request's itinerary: snapshot → key → body → call →
allowlist → targets → limits → cache → forward (fallback chain) → account.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from llmgw.api.calls import call_mark, check_model, parse_call, prompt_excerpt
from llmgw.api.routing import annotate, route, route_cached
from llmgw.auth.keys import allow_model, identify, may_use
from llmgw.budgets import gate
from llmgw.budgets.scopes import budget_key_of
from llmgw.cache import serve as caching
from llmgw.cache.embed import Embedder, embedder
from llmgw.core import Call, Endpoint, Principal, RequestContext
from llmgw.errors import ModelNotFound
from llmgw.forward import forward
from llmgw.hedge import count_losers
from llmgw.limits.clientip import client_address
from llmgw.observe.tracing import note
from llmgw.observe.usage import Spend
from llmgw.routing.router import Target
from llmgw.runtime import Runtime
from llmgw.server.appkeys import (
    ACCOUNTING,
    BODIES,
    BUDGETS,
    CACHE,
    CONTEXT,
    KEYRING,
    LIMITER,
    METRICS,
    STORE,
    USAGE,
)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await handle(request, "chat")


async def completions(request: web.Request) -> web.StreamResponse:
    return await handle(request, "completions")


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await handle(request, "embeddings")


async def responses(request: web.Request) -> web.StreamResponse:
    return await handle(request, "responses")


async def moderations(request: web.Request) -> web.StreamResponse:
    return await handle(request, "moderations")


async def images(request: web.Request) -> web.StreamResponse:
    return await handle(request, "images")


async def speech(request: web.Request) -> web.StreamResponse:
    return await handle(request, "audio_speech")


async def handle(request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
    """The request's itinerary, shared by every client surface."""
    ctx = request[CONTEXT]
    ctx.endpoint = endpoint
    app = request.app
    runtime = app[STORE].current  # this request's snapshot, to the end
    config = runtime.config
    principal = await identify(request.headers, config.auth, app[KEYRING])
    ctx.key = principal.name
    async with app[BODIES].receive(request, config.server) as raw:
        if not (config.cache.enabled and endpoint in caching.CACHEABLE):
            call = parse_call(endpoint, raw, request.headers)
            return await _serve(request, runtime, principal, call)
        parsed = Parsed(endpoint, raw, call_mark(endpoint, raw, request.headers, principal.name))
        known = app[CACHE].hit_calls.find(parsed.mark, config)
        if known is None:
            call = parse_call(endpoint, raw, request.headers)
        else:  # this body's hit again: parsed and keyed already
            call, parsed.key = known
        return await _serve(request, runtime, principal, call, parsed=parsed)


@dataclass(slots=True)
class Parsed:
    """Where a client surface's call came from, for the memo of hit calls (cache/hits.py)."""

    endpoint: Endpoint
    raw: bytes
    mark: tuple[object, ...]  # api/calls.py's call_mark
    key: str | None = None  # the cache key: the call is a remembered hit's


async def _serve(
    request: web.Request,
    runtime: Runtime,
    principal: Principal,
    call: Call,
    targets: tuple[Target, ...] | None = None,
    parsed: Parsed | None = None,
) -> web.StreamResponse:
    """The itinerary from a parsed call; ``targets`` when the caller routed it already;
    ``parsed``: how the call was come by, when the memo of hit calls may be used."""
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
    looked = None
    hit = False
    if targets is None:
        allow_model(principal, call.model)
        known = None if parsed is None else parsed.key
        looked = await caching.look_up(request, ctx, runtime, call, app[CACHE], known)
        if looked is not None and looked.entry is not None:  # a hit: nothing to decide
            hit = True
            if parsed is not None and known is None:  # this body's first hit: remembered
                size = len(parsed.raw) + (0 if call.raw is parsed.raw else len(call.raw))
                app[CACHE].hit_calls.keep(parsed.mark, config, call, looked.key, size)
            targets = (route_cached(ctx, runtime, call, looked.entry),)
        else:  # 404 (or 400) before limits and upstream
            if parsed is not None and known is not None:  # a hit's call serves hits only
                call = parse_call(parsed.endpoint, parsed.raw, request.headers)
            targets = route(request, ctx, runtime, call)
    if ctx.trace is not None:
        note(ctx, "llmgw.routing", targets=", ".join(str(target) for target in targets))
    if ctx.budget_key is None:
        ctx.budget_key = budget_key_of(request.headers)
    hold, admission = await gate.admit(  # a hit costs nothing: checked, nothing reserved
        app[BUDGETS], app[LIMITER], config, principal, call, targets, ctx, runtime.prices, hit
    )
    if ctx.trace is not None:
        note(ctx, "llmgw.limits", decision="admitted")
    metrics = app[METRICS]
    response = None
    embedded: list[Spend] = []  # the semantic cache's embedding call made for it
    try:
        response = await caching.serve(
            request,
            ctx,
            runtime,
            call,
            app[CACHE],
            metrics,
            lambda answer: forward(ctx, runtime, call, targets, metrics, answer),
            refresh=principal.cache_refresh,
            use_cache=call.extensions.cache,
            embed=_embedder(request, runtime, call, embedded),
            looked=looked,
        )
        annotate(ctx, response)
        return response
    finally:  # also on errors and when the client went away
        # A hedge's cancelled racers: paid for all the same (usage, limits, budgets, and
        # a ledger row each, written with the request's), but the client made one request;
        # its embedding call (and that call's racers) is settled with it too.
        losers = count_losers(app[USAGE], ctx, call, runtime.prices)
        if embedded:
            losers += tuple(embedded)
        spend = app[USAGE].record(ctx, call, response, runtime.prices)
        await gate.settle(
            app[BUDGETS], app[LIMITER], config.budgets, hold, admission, spend, losers
        )


def _embedder(
    request: web.Request, runtime: Runtime, call: Call, spent: list[Spend]
) -> Embedder | None:
    """How this request embeds its prompt for the semantic cache (SPEC §13), its usage
    counted (tokens, log line, ledger) under the request's key, and what it and its
    hedged racers that lost spent put in ``spent`` (settled with the request's limits
    and budgets); None when off."""
    cache = runtime.config.cache
    if not (cache.enabled and cache.semantic.enabled and call.extensions.cache):
        return None
    app = request.app

    def account(ctx: RequestContext, embedding: Call) -> None:
        spent.extend(count_losers(app[USAGE], ctx, embedding, runtime.prices))
        spent.append(app[USAGE].record(ctx, embedding, None, runtime.prices))
        app[ACCOUNTING].add(ctx, True)

    return embedder(runtime, app[METRICS], request[CONTEXT], account)


serve_call = _serve  # the itinerary from an already parsed call (api/simple.py)


async def list_models(request: web.Request) -> web.Response:
    """The names this key may use: aliases, then models listed by enabled providers."""
    runtime = request.app[STORE].current
    principal = await identify(request.headers, runtime.config.auth, request.app[KEYRING])
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
    principal = await identify(request.headers, runtime.config.auth, request.app[KEYRING])
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
