"""The simple prompt APIs (SPEC §9): ``POST /api/chat``, ``GET``/``POST
/api/chat/stream`` and ``POST /gateway/query``.

Each builds an OpenAI chat ``Call`` from the simple request and runs the very
itinerary of ``/v1/chat/completions`` (auth, allowlist, limits, cache with stream
replay, routing and fallback, usage, logs) under the endpoint label ``simple``; the
answer is rewritten into the simple shapes on its way out (``simple_wire.py``).

``model`` defaults to ``simple_api.model`` (else the first configured model name);
``provider`` names a configured provider and picks its ``default_model``, and then
the request stays on that provider (``provider/model``, one target). Errors keep
OpenAI's shape. ``Authorization: <key>`` without ``Bearer`` is accepted here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from llmgw.api import simple_wire
from llmgw.api.calls import check_model
from llmgw.api.openai import serve_call
from llmgw.auth.keys import authenticate
from llmgw.core import Call
from llmgw.errors import InvalidRequest, NoProviderAvailable, NotFound
from llmgw.runtime import Runtime
from llmgw.server.appkeys import BODIES, CONTEXT, KEYRING, STORE
from llmgw.translate.simple import Shape

QUERY_FIELDS = ("prompt", "message", "model", "provider", "system")
MAX_PROMPT_CHARS = 1_000_000  # a query string cannot come near; a JSON body may


async def chat(request: web.Request) -> web.StreamResponse:
    return await _handle(request, "chat", stream=False)


async def chat_stream(request: web.Request) -> web.StreamResponse:
    return await _handle(request, "chat", stream=True)


async def query(request: web.Request) -> web.StreamResponse:
    return await _handle(request, "query", stream=False)


async def _handle(request: web.Request, shape: Shape, *, stream: bool) -> web.StreamResponse:
    ctx = request[CONTEXT]
    runtime = request.app[STORE].current
    config = runtime.config
    if not config.simple_api.enabled:
        raise NotFound(f"Unknown path {request.path}")
    ctx.endpoint = "simple"
    principal = authenticate(_bare_key(request.headers), config.auth, request.app[KEYRING])
    ctx.key = principal.name
    if request.method == "GET":
        fields = {name: request.query[name] for name in QUERY_FIELDS if name in request.query}
        call = build_call(runtime, fields, stream)
        simple_wire.install(request, ctx, shape)
        return await serve_call(request, runtime, principal, call)
    async with request.app[BODIES].receive(request, config.server) as raw:
        try:
            fields = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"The request body is not valid JSON: {exc.msg}") from None
        if not isinstance(fields, dict):
            raise InvalidRequest("The request body must be a JSON object")
        call = build_call(runtime, fields, stream)
        simple_wire.install(request, ctx, shape)
        return await serve_call(request, runtime, principal, call)


def build_call(runtime: Runtime, fields: Mapping[str, Any], stream: bool) -> Call:
    """The OpenAI chat call a simple request stands for, or a 400/404/503."""
    given = [name for name in ("message", "prompt") if name in fields] or ["prompt"]
    for name in given:  # both may be sent (``message`` is used): neither may be wrong
        text = fields.get(name)
        if not isinstance(text, str) or not text.strip():
            raise InvalidRequest(f"'{name}' is required and must be a non-empty string", param=name)
        if len(text) > MAX_PROMPT_CHARS:
            raise InvalidRequest(f"'{name}' is over {MAX_PROMPT_CHARS} characters", param=name)
    prompt: str = fields[given[0]]
    for field in ("model", "provider", "system"):
        value = fields.get(field)
        if value is None:
            continue
        if not isinstance(value, str) or (field != "system" and not value.strip()):
            raise InvalidRequest(f"'{field}' must be a non-empty string", param=field)
    model = _model(runtime, fields.get("model"), fields.get("provider"))
    check_model(model)
    messages: list[dict[str, Any]] = []
    if fields.get("system"):
        messages.append({"role": "system", "content": fields["system"]})
    messages.append({"role": "user", "content": prompt})
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    max_tokens = fields.get("max_tokens")
    if max_tokens is not None:
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise InvalidRequest("'max_tokens' must be a positive integer", param="max_tokens")
        body["max_tokens"] = max_tokens
    temperature = fields.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, int | float) or isinstance(temperature, bool):
            raise InvalidRequest("'temperature' must be a number", param="temperature")
        body["temperature"] = temperature
    return Call("chat", model, stream, body, orjson.dumps(body))


def _model(runtime: Runtime, model: str | None, provider: str | None) -> str:
    if provider is None:
        chosen = (
            model or runtime.config.simple_api.model or next(iter(runtime.router.names()), None)
        )
        if not chosen:
            raise InvalidRequest("'model' is required: simple_api.model is not set", param="model")
        return chosen
    found = runtime.providers.get(provider)
    if found is None:
        known = ", ".join(runtime.providers)
        raise NotFound(
            f"The provider '{provider}' is not configured. Configured providers: {known}",
            param="provider",
        )
    if found.disabled is not None:
        raise NoProviderAvailable(
            f"The provider '{provider}' is disabled: {found.disabled}", param="provider"
        )
    listed = [m for m in found.config.models or () if m != "*"]
    chosen = model or found.config.default_model or (listed[0] if listed else None)
    if not chosen:
        raise InvalidRequest(
            f"The provider '{provider}' has no default_model: send 'model'", param="model"
        )
    return f"{provider}/{chosen}"


def _bare_key(headers: Mapping[str, str]) -> Mapping[str, str]:
    """The headers with ``Authorization: <key>`` read as ``Authorization: Bearer <key>``."""
    value = headers.get("Authorization", "").strip()
    if not value or " " in value:
        return headers
    amended = CIMultiDict(headers)
    amended["Authorization"] = f"Bearer {value}"
    return amended
