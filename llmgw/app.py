"""create_app(): wiring only — routes, middlewares, and the owners of shared state."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from llmgw import __version__
from llmgw.api import (
    admin,
    anthropic,
    audio,
    budget,
    health,
    keys,
    live,
    openai,
    openapi,
    ops,
    routing,
    simple,
    usage,
)
from llmgw.auth.keys import Keyring
from llmgw.auth.sessions import Sessions
from llmgw.budgets.front import Budgets
from llmgw.cache.front import ResponseCache
from llmgw.config import GatewayConfig
from llmgw.config.store import DatabaseConfig
from llmgw.errors import NotFound
from llmgw.http.client import Pool
from llmgw.limits.front import Limiter
from llmgw.observe.accounting import Accounting
from llmgw.observe.live import LiveStats
from llmgw.observe.metrics import Metrics
from llmgw.observe.tracing import Tracing
from llmgw.observe.usage import UsageBook
from llmgw.routing.state import RoutingState
from llmgw.runtime import ProviderStates, build_runtime
from llmgw.server import lifecycle
from llmgw.server.appkeys import (
    ACCOUNTING,
    BODIES,
    BUDGETS,
    CACHE,
    DATABASE,
    KEYRING,
    LEDGER,
    LIMITER,
    LIVE,
    METRICS,
    METRICS_LISTENER,
    POOL,
    ROUTING,
    SESSIONS,
    STATES,
    STORE,
    TRACING,
    USAGE,
)
from llmgw.server.body import Bodies
from llmgw.server.middleware import IDS, RequestIds, add_headers, gateway_middleware
from llmgw.server.reload import ConfigStore
from llmgw.store import engine
from llmgw.store.ledger import Ledger
from llmgw.upstream import MAX_RESPONSE_BYTES


def create_app(
    config: GatewayConfig,
    *,
    config_path: str | None = None,
    config_text: str | None = None,
    states: ProviderStates | None = None,
) -> web.Application:
    # The body limit is enforced per request from the live config (calls.read_body).
    app = web.Application(middlewares=[gateway_middleware], client_max_size=2**62)
    app[METRICS] = Metrics()
    app[LIVE] = LiveStats()
    app[ACCOUNTING] = Accounting(app[METRICS], app[LIVE])
    app[SESSIONS] = Sessions()
    app[TRACING] = Tracing(app[METRICS].spans_dropped.inc)
    app[STATES] = states or ProviderStates()
    app[KEYRING] = Keyring()
    app[LIMITER] = Limiter(app[METRICS])
    app[USAGE] = UsageBook(app[METRICS])
    app[CACHE] = ResponseCache()
    app[IDS] = RequestIds()
    # Listeners are fixed for the life of the process, like server.port.
    app[METRICS_LISTENER] = config.server.metrics_port is not None
    app[BODIES] = Bodies()
    app[ROUTING] = RoutingState(app[METRICS].routing_decisions.counts)
    app[BUDGETS] = Budgets(app[METRICS])
    app[DATABASE] = None
    app[LEDGER] = None
    app.cleanup_ctx.append(_upstream_pool)
    app.cleanup_ctx.append(_config_store(config, config_path, config_text))
    app.cleanup_ctx.append(_database(engine.configured(config.database, config_path)))
    app.cleanup_ctx.append(lifecycle.config_watcher)
    app.cleanup_ctx.append(_limiter)
    app.cleanup_ctx.append(_cache)
    app.cleanup_ctx.append(_tracing)
    app.on_response_prepare.append(add_headers)
    app.on_shutdown.append(_stop_ready)

    app.router.add_post("/v1/chat/completions", openai.chat_completions)
    app.router.add_post("/v1/completions", openai.completions)
    app.router.add_post("/v1/embeddings", openai.embeddings)
    app.router.add_post("/v1/responses", openai.responses)
    app.router.add_post("/v1/moderations", openai.moderations)
    app.router.add_post("/v1/images/generations", openai.images)
    app.router.add_post("/v1/audio/speech", openai.speech)
    app.router.add_post("/v1/audio/transcriptions", audio.transcriptions)
    app.router.add_post("/v1/audio/translations", audio.translations)
    app.router.add_post("/v1/messages", anthropic.messages)
    app.router.add_post("/v1/messages/count_tokens", anthropic.count_tokens)
    app.router.add_get("/v1/models", openai.list_models)
    app.router.add_get("/v1/models/{model:.+}", openai.get_model)
    app.router.add_post("/api/chat", simple.chat)
    app.router.add_get("/api/chat/stream", simple.chat_stream)
    app.router.add_post("/api/chat/stream", simple.chat_stream)
    app.router.add_post("/gateway/query", simple.query)
    app.router.add_get("/health", ops.health)
    app.router.add_get("/ready", ops.ready)
    app.router.add_get("/v1/health/live", ops.health)
    app.router.add_get("/v1/health/ready", ops.ready)
    app.router.add_get("/v1/health/detailed", health.detailed)
    app.router.add_get("/v1/health/metrics", health.metrics)
    app.router.add_get("/", health.discovery)
    app.router.add_get("/v1", health.discovery)
    app.router.add_get("/metrics", ops.metrics)
    app.router.add_get("/openapi.json", openapi.document)
    app.router.add_get("/api/v1/providers/status", ops.providers_status)
    app.router.add_get("/api/v1/usage", usage.usage)
    app.router.add_get("/api/v1/routing", routing.routing_status)
    app.router.add_get("/api/v1/requests", usage.recent_requests)
    app.router.add_get("/api/v1/budget", budget.budget)
    app.router.add_post("/api/v1/keys", keys.create_key)
    app.router.add_get("/api/v1/keys", keys.list_keys)
    app.router.add_get("/api/v1/keys/{name}", keys.get_key)
    app.router.add_patch("/api/v1/keys/{name}", keys.change_key)
    app.router.add_delete("/api/v1/keys/{name}", keys.delete_key)
    app.router.add_get("/api/v1/cache/stats", ops.cache_stats)
    app.router.add_post("/api/v1/cache/clear", ops.cache_clear)
    app.router.add_get("/api/v1/config", ops.config)
    app.router.add_post("/api/v1/config/reload", ops.config_reload)
    app.router.add_get("/api/v1/stats/live", live.stats_live)
    app.router.add_get("/admin", admin.index)
    app.router.add_get("/admin/", admin.index)
    app.router.add_get("/admin/session", admin.session_status)
    app.router.add_post("/admin/session", admin.sign_in)
    app.router.add_delete("/admin/session", admin.sign_out)
    app.router.add_get("/admin/{name:.+}", admin.static)
    return app


def create_metrics_app(main: web.Application) -> web.Application:
    """The ``server.metrics_port`` listener: ``GET /metrics`` of ``main``, nothing else."""

    async def metrics(request: web.Request) -> web.Response:
        return await ops.render_metrics(main)

    async def elsewhere(request: web.Request) -> web.Response:
        body = NotFound(f"Unknown path {request.path}").openai_body()
        return web.Response(body=body, status=404, content_type="application/json")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_route("*", "/{tail:.*}", elsewhere)
    return app


async def _upstream_pool(app: web.Application) -> AsyncIterator[None]:
    """The one connection pool of the process: keep-alive, closed at shutdown."""
    pool = Pool(user_agent=f"llmgw/{__version__}", max_body=MAX_RESPONSE_BYTES)
    app[POOL] = pool
    app[METRICS].connections.source = pool.figures
    yield
    await pool.close()


async def _limiter(app: web.Application) -> AsyncIterator[None]:
    """Renew Redis concurrency leases while serving; close Redis clients at the end."""
    limiter = app[LIMITER]
    leases = asyncio.get_running_loop().create_task(limiter.maintain())
    yield
    leases.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await leases
    await limiter.close()


async def _cache(app: web.Application) -> AsyncIterator[None]:
    """The cache outlives every config snapshot; its store closes with the app."""
    yield
    await app[CACHE].close()


async def _tracing(app: web.Application) -> AsyncIterator[None]:
    """Spans still queued are exported at shutdown (within the export timeout)."""
    yield
    await asyncio.to_thread(app[TRACING].close)


def _config_store(
    config: GatewayConfig, path: str | None, text: str | None
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def owner(app: web.Application) -> AsyncIterator[None]:
        runtime = build_runtime(config, app[STATES], app[POOL])
        runtime.announce()
        app[STORE] = ConfigStore(runtime, path, text)
        app[METRICS].config_info.labels(runtime.digest).set(1)
        yield

    return owner


def _database(url: str | None) -> Callable[[web.Application], AsyncIterator[None]]:
    """The database (fixed for the life of the process, like server.port): migrated at
    start; the usage ledger written until the end; managed keys followed; JWT keys
    fetched."""

    async def owner(app: web.Application) -> AsyncIterator[None]:
        verifier = app[KEYRING].jwt(app[STORE].current.config.auth)
        if verifier is not None:
            await verifier.refresh(force=True)
        if url is None:
            yield
            await app[BUDGETS].close()
            return
        db = engine.Database(url)
        await db.start()
        app[DATABASE] = db
        keyring = app[KEYRING]
        await keyring.managed.load(db)
        buffer = (app[STORE].current.config.database or DatabaseConfig()).buffer
        app[BUDGETS].open(db, app[METRICS], buffer)  # its spend written in batches until the end
        ledger = app[LEDGER] = Ledger(db, app[METRICS], buffer)
        app[ACCOUNTING].ledger = ledger.add
        ledger.start()
        poller = asyncio.get_running_loop().create_task(keyring.managed.watch(db))
        yield
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
        app[ACCOUNTING].drain()  # requests that ended in this very turn
        await ledger.close()
        await app[BUDGETS].close()
        await db.close()

    return owner


async def _stop_ready(app: web.Application) -> None:
    app[STORE].stopping = True
