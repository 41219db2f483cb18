"""The Anthropic Messages surface, ``POST /v1/messages``, for clients such as the
``anthropic`` SDK and Claude Code, and ``POST /v1/messages/count_tokens``. Same
aliases, fallback, limits and cache as every other endpoint; answers and errors in
Anthropic's wire format."""

from __future__ import annotations

import orjson
from aiohttp import web

from llmgw.api.calls import parse_call
from llmgw.api.openai import handle, serve_call
from llmgw.api.routing import route
from llmgw.auth.keys import allow_model, identify
from llmgw.core import Call, estimate_prompt_tokens, tokens_for_chars
from llmgw.server.appkeys import BODIES, CONTEXT, KEYRING, STORE


async def messages(request: web.Request) -> web.StreamResponse:
    return await handle(request, "messages")


async def count_tokens(request: web.Request) -> web.StreamResponse:
    """Relayed to the model's Anthropic targets (the others skipped); a model with none
    is answered with the gateway's estimate (about four characters a token)."""
    ctx = request[CONTEXT]
    ctx.endpoint = "count_tokens"
    app = request.app
    runtime = app[STORE].current
    config = runtime.config
    principal = await identify(request.headers, config.auth, app[KEYRING])
    ctx.key = principal.name
    async with app[BODIES].receive(request, config.server) as raw:
        call = parse_call("count_tokens", raw, request.headers)
        ctx.model = call.model
        allow_model(principal, call.model)
        targets = route(request, ctx, runtime, call)
        providers = runtime.providers
        if any(providers[t.provider].adapter.serves(call) for t in targets):
            return await serve_call(request, runtime, principal, call, targets)
    body = orjson.dumps({"input_tokens": estimate(call)})
    return web.Response(body=body, content_type="application/json")


def estimate(call: Call) -> int:
    """The prompt's tokens as the gateway estimates them: messages, system and tools."""
    tools = call.body.get("tools")
    extra = len(orjson.dumps(tools)) if isinstance(tools, list) else 0
    return estimate_prompt_tokens(call) + (tokens_for_chars(extra) if extra else 0)
