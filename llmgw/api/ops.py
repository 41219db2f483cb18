"""Operations endpoints: liveness, readiness, metrics and the admin API (SPEC §3).

``/api/v1/*`` is guarded by ``guard.require_admin``. ``/metrics`` is too, unless
``server.metrics_port`` gives it a listener of its own: then it is served there, open,
and is 404 on the main port.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from llmgw.api.guard import require_admin
from llmgw.cache.front import ResponseCache
from llmgw.cache.memory import MemoryStore
from llmgw.config.redact import redacted
from llmgw.errors import NotFound
from llmgw.observe.metrics import CIRCUIT_STATES
from llmgw.server.appkeys import ACCOUNTING, CACHE, METRICS, METRICS_LISTENER, STORE
from llmgw.server.lifecycle import reload_config

__all__ = ["require_admin"]  # re-exported: api.usage and callers guard with it


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    store = request.app[STORE]
    if store.stopping:
        return web.json_response({"status": "stopping"}, status=503)
    if not store.current.can_serve():
        return web.json_response({"status": "no provider can serve"}, status=503)
    return web.json_response({"status": "ready", "config": store.current.digest})


async def metrics(request: web.Request) -> web.Response:
    """``/metrics`` on the main listener: admin only, or 404 when it has its own port."""
    if request.app[METRICS_LISTENER]:
        raise NotFound(f"Unknown path {request.path}")
    require_admin(request)
    return await render_metrics(request.app)


async def render_metrics(app: web.Application) -> web.Response:
    """The Prometheus exposition of ``app``, on whichever listener asked."""
    app[ACCOUNTING].drain()  # requests that ended in this turn of the loop
    registry = app[METRICS]
    store = app[STORE]
    for provider in store.current.providers.values():
        state = CIRCUIT_STATES[provider.state.breaker.state]
        registry.circuit_state.labels(provider.name).set(state)
    cache = app[CACHE].current()
    if isinstance(cache, MemoryStore):
        registry.cache_size.set((await cache.sizes())[1])
    response = web.Response(body=registry.render())
    response.content_type = "text/plain"
    response.headers["Content-Type"] = registry.content_type
    return response


async def providers_status(request: web.Request) -> web.Response:
    require_admin(request)
    runtime = request.app[STORE].current
    providers = {}
    for name, provider in runtime.providers.items():
        state = provider.state
        providers[name] = {
            **provider.status(),
            "latency_ms": None if state.latency_ms is None else round(state.latency_ms, 2),
            "in_flight": state.inflight,
            "max_concurrency": provider.config.max_concurrency,
            "models": list(provider.config.models or ()),
        }
    return web.Response(
        body=orjson.dumps({"providers": providers}), content_type="application/json"
    )


async def config(request: web.Request) -> web.Response:
    """The running config, secrets redacted, with its hash and the last reload's outcome."""
    require_admin(request)
    store = request.app[STORE]
    runtime = store.current
    body = {
        "hash": runtime.digest,
        "path": store.path,
        "loaded_at": runtime.loaded_at,
        "last_reload": store.last.as_json(),
        "config": redacted(runtime.config),
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def config_reload(request: web.Request) -> web.Response:
    """Reload now; 200 with the result, or 422 listing every error (old config kept)."""
    require_admin(request)
    result = await reload_config(request.app, "api")
    body = {**result.as_json(), "hash": request.app[STORE].current.digest}
    status = 422 if result.result == "error" else 200
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


async def cache_stats(request: web.Request) -> web.Response:
    require_admin(request)
    cache = request.app[CACHE]
    settings = request.app[STORE].current.config.cache
    store = cache.current()
    entries, size = await store.sizes() if store is not None else (0, 0)
    body = {
        "enabled": settings.enabled,
        "backend": settings.backend,
        "entries": entries,
        "bytes": size,
        "max_bytes": settings.max_size if settings.backend == "memory" else None,
        "hits": cache.hits,
        "misses": cache.misses,
        "evictions": store.stats.evictions if store is not None else 0,
        "in_flight": len(cache.flights),
        "semantic": _semantic_stats(cache, settings.semantic.enabled),
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def _semantic_stats(cache: ResponseCache, enabled: bool) -> dict[str, object]:
    """SPEC §13's counts: lookups answered, missed, skipped; the index's size."""
    semantic = cache.current_semantic()
    if semantic is None:
        return {"enabled": enabled, "hits": 0, "misses": 0, "skipped": 0, "index_size": 0}
    return {
        "enabled": enabled,
        "hits": semantic.hits,
        "misses": semantic.misses,
        "skipped": semantic.skipped,
        "index_size": len(semantic.index),
        "evictions": semantic.index.evictions,
    }


async def cache_clear(request: web.Request) -> web.Response:
    """Empty the exact store and the semantic index (every replica's, when on Redis):
    ``cleared`` answers and ``semantic_cleared`` vectors."""
    require_admin(request)
    cache = request.app[CACHE]
    store = cache.current()
    cleared = (await store.sizes())[0] if store is not None else 0
    if store is not None:
        await store.clear()
    semantic = cache.current_semantic()
    vectors = await semantic.clear() if semantic is not None else 0
    body = {"cleared": cleared, "semantic_cleared": vectors}
    return web.Response(body=orjson.dumps(body), content_type="application/json")
