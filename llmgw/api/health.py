"""Health and discovery (SPEC §9): ``/v1/health/*``, ``GET /`` and ``GET /v1``.

``live`` and ``ready`` are ``/health`` and ``/ready`` under the paths Kubernetes
setups of the seed gateways probe. ``detailed`` and ``metrics`` are admin only: per
provider state, the reachability of Redis, and this process's totals as JSON.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from llmgw import __version__
from llmgw.api.guard import require_admin
from llmgw.limits.shared_redis import redact
from llmgw.server.appkeys import ACCOUNTING, CACHE, STORE, USAGE

PING_TIMEOUT = 1.0  # seconds a Redis reachability check may take


async def detailed(request: web.Request) -> web.Response:
    require_admin(request)
    runtime = request.app[STORE].current
    config = runtime.config
    providers: dict[str, Any] = {}
    for name, provider in runtime.providers.items():
        state = provider.state
        providers[name] = {
            **provider.status(),
            "latency_ms": {
                "p50": state.latencies.percentile(50),
                "p95": state.latencies.percentile(95),
            },
            "error_rate": round(state.errors / state.requests, 4) if state.requests else 0.0,
            "last_error_at": state.last_error_at if state.last_error else None,
        }
    urls = {
        "cache": config.cache.redis_url
        if config.cache.enabled and config.cache.backend == "redis"
        else None,
        "limits": config.limits.redis_url if config.limits.backend == "redis" else None,
    }
    redis = {use: await _reach(url) for use, url in urls.items()}
    body = {
        "status": "ok" if runtime.can_serve() else "degraded",
        "version": __version__,
        "config": runtime.digest,
        "providers": providers,
        "redis": redis,
        "database": {"configured": False, "reachable": None, "status": "not configured"},
    }
    return _json(body)


async def metrics(request: web.Request) -> web.Response:
    require_admin(request)
    app = request.app
    accounting = app[ACCOUNTING]
    accounting.drain()  # requests that ended in this turn of the loop
    cache = app[CACHE]
    looked_up = cache.hits + cache.misses
    usage = app[USAGE].total.as_json()
    body = {
        "requests": accounting.requests,
        "errors": accounting.errors,
        "error_rate": round(accounting.errors / accounting.requests, 4)
        if accounting.requests
        else 0.0,
        "cache": {
            "hits": cache.hits,
            "misses": cache.misses,
            "hit_ratio": round(cache.hits / looked_up, 4) if looked_up else 0.0,
        },
        "latency_ms": accounting.latencies.summary(),
        "tokens": {
            "prompt": usage["prompt_tokens"],
            "completion": usage["completion_tokens"],
            "total": usage["prompt_tokens"] + usage["completion_tokens"],
        },
        "cost_usd": usage["cost_usd"],
    }
    return _json(body)


async def discovery(request: web.Request) -> web.Response:
    """``GET /`` and ``GET /v1``: what this is, and the endpoints it serves."""
    endpoints: dict[str, set[str]] = {}
    for route in request.app.router.routes():
        path = route.resource.canonical if route.resource is not None else None
        if path and route.method != "HEAD":
            endpoints.setdefault(path, set()).add(route.method)
    listed = [
        {"path": path, "methods": sorted(methods)} for path, methods in sorted(endpoints.items())
    ]
    return _json({"name": "llmgw", "version": __version__, "endpoints": listed})


async def _reach(url: str | None) -> dict[str, Any] | None:
    """Whether Redis at ``url`` answers a PING (None: not configured)."""
    if url is None:
        return None
    client = Redis.from_url(url, socket_connect_timeout=PING_TIMEOUT, socket_timeout=PING_TIMEOUT)
    try:
        async with asyncio.timeout(PING_TIMEOUT * 2):
            reachable = bool(await client.ping())
    except (RedisError, OSError, TimeoutError):
        reachable = False
    finally:
        await client.aclose()
    return {"url": redact(url), "reachable": reachable}


def _json(body: dict[str, Any]) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json")
