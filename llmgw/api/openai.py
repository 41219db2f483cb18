"""The OpenAI-compatible client surface: chat, completions, embeddings, models.

Each handler reads as the request's itinerary: snapshot → body → call → forward.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ..errors import ModelNotFound
from ..forward import forward
from ..keys import CONTEXT, METRICS, STORE
from ..providers import Endpoint
from .calls import parse_call, read_body


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _handle(request, "chat")


async def completions(request: web.Request) -> web.StreamResponse:
    return await _handle(request, "completions")


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await _handle(request, "embeddings")


async def _handle(request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
    ctx = request[CONTEXT]
    ctx.endpoint = endpoint
    runtime = request.app[STORE].current  # this request's snapshot, to the end
    raw = await read_body(request, runtime.config.server.max_body_size)
    call = parse_call(endpoint, raw, request.headers)
    ctx.model = call.model
    ctx.model_label = runtime.router.label(call.model)
    return await forward(request, ctx, runtime, call, request.app[METRICS])


async def list_models(request: web.Request) -> web.Response:
    runtime = request.app[STORE].current
    data = [_model_entry(name, runtime.router.owners(name)) for name in runtime.router.names()]
    return web.Response(
        body=orjson.dumps({"object": "list", "data": data}), content_type="application/json"
    )


async def get_model(request: web.Request) -> web.Response:
    runtime = request.app[STORE].current
    model = request.match_info["model"]
    router = runtime.router
    provider, _, upstream_model = model.partition("/")
    known = model in router.names() or (
        provider in runtime.providers and upstream_model in router.names()
    )
    if not known:
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
