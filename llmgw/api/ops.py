"""Operations endpoints: liveness, readiness, metrics and the admin API (SPEC §3).

``/api/v1/*`` needs ``Authorization: Bearer <auth.admin_key>``; with no admin key
configured it answers only clients on loopback.
"""

from __future__ import annotations

import hmac
import ipaddress

import orjson
from aiohttp import web

from ..cache import MemoryStore
from ..config.redact import redacted
from ..errors import AuthenticationFailed, Forbidden
from ..keys import ACCOUNTING, CACHE, METRICS, STORE
from ..lifecycle import reload_config
from ..metrics import CIRCUIT_STATES


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
    request.app[ACCOUNTING].drain()  # requests that ended in this turn of the loop
    registry = request.app[METRICS]
    store = request.app[STORE]
    for provider in store.current.providers.values():
        state = CIRCUIT_STATES[provider.state.breaker.state]
        registry.circuit_state.labels(provider.name).set(state)
    cache = request.app[CACHE].current()
    if isinstance(cache, MemoryStore):
        registry.cache_size.set((await cache.sizes())[1])
    response = web.Response(body=registry.render())
    response.content_type = "text/plain"
    response.headers["Content-Type"] = registry.content_type
    return response


def require_admin(request: web.Request) -> None:
    """Raise 401/403 unless the caller may use the admin API."""
    admin_key = request.app[STORE].current.config.auth.admin_key
    if admin_key is None:
        if not _is_loopback(request.remote):
            raise Forbidden(
                "The admin API answers only loopback clients while auth.admin_key is unset"
            )
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode("utf-8", "surrogateescape"),
        admin_key.encode("utf-8", "surrogateescape"),
    ):
        raise AuthenticationFailed("A valid admin key is required (Authorization: Bearer ...)")


async def providers_status(request: web.Request) -> web.Response:
    require_admin(request)
    runtime = request.app[STORE].current
    providers = {}
    for name, provider in runtime.providers.items():
        state = provider.state
        providers[name] = {
            "type": provider.config.type,
            "enabled": provider.disabled is None,
            "disabled_reason": provider.disabled,
            "circuit": state.breaker.state,
            "latency_ms": None if state.latency_ms is None else round(state.latency_ms, 2),
            "requests": state.requests,
            "errors": state.errors,
            "last_error": state.last_error,
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
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def cache_clear(request: web.Request) -> web.Response:
    require_admin(request)
    store = request.app[CACHE].current()
    cleared = (await store.sizes())[0] if store is not None else 0
    if store is not None:
        await store.clear()
    return web.Response(body=orjson.dumps({"cleared": cleared}), content_type="application/json")


def _is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False
