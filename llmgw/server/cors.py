"""CORS for browser clients, from ``server.cors_origins`` (exact origins or ``*``).

CORS never applies to the admin API (``/api/...``) nor to ``/metrics``: no
Access-Control-* header is sent there and their preflights are refused, whatever
``cors_origins`` says, so no web page can read them or send them an admin key.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

_EXPOSED = (
    "X-Request-ID, request-id, X-Cache, X-Cache-Match, X-Cache-Similarity, Age, "
    "X-LLMGW-Provider, X-LLMGW-Model, X-LLMGW-Attempts, "
    "X-LLMGW-Dropped-Params, X-LLMGW-Routing, "
    "Retry-After, x-should-retry, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, "
    "x-ratelimit-reset-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, "
    "x-ratelimit-reset-tokens"
)


_NEVER_SHARED = ("/api/", "/metrics")


def applies(path: str) -> bool:
    """Whether a page of another origin may ever be allowed to read ``path``."""
    return not path.startswith(_NEVER_SHARED)


def allowed_origin(request: web.Request, origins: Sequence[str]) -> str | None:
    """The value for Access-Control-Allow-Origin, or None when CORS does not apply."""
    origin = request.headers.get("Origin")
    if not origin or not origins or not applies(request.path):
        return None
    if "*" in origins:
        return "*"
    return origin if origin in origins else None


def preflight(request: web.Request, origins: Sequence[str]) -> web.Response | None:
    """Answer a CORS preflight (OPTIONS with Access-Control-Request-Method)."""
    if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
        return None
    allow = allowed_origin(request, origins)
    if allow is None:
        return web.Response(status=403)
    headers = {
        "Access-Control-Allow-Origin": allow,
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": request.headers.get(
            "Access-Control-Request-Headers", "Authorization, Content-Type"
        ),
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }
    return web.Response(status=204, headers=headers)


def apply(request: web.Request, response: web.StreamResponse, origins: Sequence[str]) -> None:
    allow = allowed_origin(request, origins)
    if allow is not None:
        response.headers["Access-Control-Allow-Origin"] = allow
        response.headers["Access-Control-Expose-Headers"] = _EXPOSED
        response.headers.add("Vary", "Origin")
