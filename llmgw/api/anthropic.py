"""The Anthropic Messages surface, ``POST /v1/messages``, for clients such as the
``anthropic`` SDK and Claude Code. Same aliases, fallback, limits and cache as every
other endpoint; answers and errors in Anthropic's wire format."""

from __future__ import annotations

from aiohttp import web

from llmgw.api.openai import handle


async def messages(request: web.Request) -> web.StreamResponse:
    return await handle(request, "messages")
