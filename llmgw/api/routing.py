"""Smart routing at the client surface (SPEC §10): the decision put on the request's
context (X-LLMGW-Routing, metrics, the recent-decisions ring), the ``x-gateway``
metadata added to answers, and ``GET /api/v1/routing`` for operators."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from aiohttp import web

from llmgw.api.guard import require_admin
from llmgw.cache.entry import Entry
from llmgw.config.schema import Price
from llmgw.core import Call, RequestContext
from llmgw.plan import check, plan
from llmgw.routing.classifier import classify
from llmgw.routing.report import comment, metadata, with_metadata
from llmgw.routing.router import Target
from llmgw.runtime import Runtime
from llmgw.server.appkeys import ROUTING, STORE


def route(
    request: web.Request, ctx: RequestContext, runtime: Runtime, call: Call
) -> tuple[Target, ...]:
    """The request's fallback chain, and why, noted on ``ctx``."""
    state = request.app[ROUTING]
    strategy, targets, complexity, scores, configured = plan(runtime, call, state)
    ctx.strategy, ctx.scores = strategy, scores
    first = ctx.first_target = str(targets[0]) if targets else None
    _note_extensions(ctx, runtime, call)
    if configured and first is not None:  # labels bounded by config
        if complexity is None:  # a pool that did not score: the ring says it all the same
            complexity = classify(call.body)
        state.remember(ctx.request_id, call.model, strategy, complexity, targets, scores, first)
    if complexity is None:  # only X-LLMGW-Routing needs it: classify if it is written
        body = call.body
        ctx.complexity_of = lambda: classify(body)
    ctx.complexity = complexity
    return targets


def route_cached(ctx: RequestContext, runtime: Runtime, call: Call, entry: Entry) -> Target:
    """An exact hit's target: the one that answered the stored entry. Nothing is decided
    (no decision counted or kept in the ring); its X-LLMGW-Routing says ``cache``, with
    the score and complexity the entry was answered with."""
    check(runtime, call)  # the same 404 or 400 as a routed request
    target = Target(entry.provider, entry.upstream_model)
    first = ctx.first_target = str(target)
    ctx.strategy = "cache"
    ctx.scores = None if entry.score is None else {first: entry.score}
    ctx.complexity = entry.complexity
    if entry.complexity is None:  # stored by an older gateway: classify if it is written
        body = call.body
        ctx.complexity_of = lambda: classify(body)
    _note_extensions(ctx, runtime, call)
    return target


def _note_extensions(ctx: RequestContext, runtime: Runtime, call: Call) -> None:
    """What the request's extensions ask of its answer and accounting."""
    ext = call.extensions
    ctx.tags = ext.metadata or None
    ctx.budget_key = ext.budget_key
    if runtime.config.routing.response_metadata or ext.metadata_in_body:  # x-gateway asked
        prices = runtime.config.prices
        if call.stream:
            ctx.trailer = lambda: comment(metadata(ctx, prices))
        ctx.annotate = lambda body, content_type: _annotated(ctx, prices, body, content_type)


def annotate(ctx: RequestContext, response: web.StreamResponse) -> None:
    """Add the ``x-gateway`` block to a whole answer not yet sent (``web.Response``);
    answers written in the handler (streams, cache hits) carry it already."""
    if ctx.annotate is None or not isinstance(response, web.Response):
        return
    body = response.body
    if response.status == 200 and isinstance(body, bytes) and response.content_type:
        response.body = ctx.annotate(body, response.content_type)


def _annotated(
    ctx: RequestContext, prices: Mapping[str, Price], body: bytes, content_type: str
) -> bytes:
    """A JSON object answer gets the ``x-gateway`` key, a replayed stream the comment
    before it ends; anything else is left as it is."""
    block = metadata(ctx, prices)
    if content_type.startswith("text/event-stream"):
        return body + comment(block)
    if content_type.startswith("application/json"):
        return with_metadata(body, block) or body
    return body


async def routing_status(request: web.Request) -> web.Response:
    """``GET /api/v1/routing``: candidates, profiles, live latencies, recent decisions."""
    require_admin(request)
    runtime = request.app[STORE].current
    config = runtime.config.routing
    router = runtime.router
    candidates = (
        list(config.candidates)
        if config.candidates is not None
        else [str(t) for t in router.chat_targets]
    )
    latencies = {
        f"{name}/{model}": round(ms, 2)
        for name, provider in runtime.providers.items()
        for model, ms in sorted(provider.state.target_latency_ms.items())
    }
    body = {
        "virtual_models": {
            name: strategy
            for name, strategy in config.virtual_models.items()
            if router.virtual(name) is not None
        },
        "candidates": candidates,
        "pools": {
            name: {
                "strategy": pool.strategy,
                "targets": [{"target": p.target, "weight": p.weight} for p in pool.targets],
            }
            for name, pool in router.pools.items()
        },
        "min_quality": config.min_quality.model_dump(),
        "hedge": None if config.hedge is None else config.hedge.model_dump(),
        "profiles": {name: f.profile.to_json() for name, f in runtime.profiles.items()},
        "latency_ms": latencies,
        "recent": [entry.to_json() for entry in request.app[ROUTING].recent()],
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json")
