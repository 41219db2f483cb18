"""How the gateway starts, reloads and stops (SPEC §1 signals, §6 hot reload).

``reload_config`` is the one entry point for every reload trigger (file watch,
SIGHUP, the admin API). ``serve`` runs the app for the command line: SIGHUP
reloads; SIGTERM/SIGINT stop accepting, turn ``/ready`` to 503, let requests and
streams in flight finish within ``server.shutdown_timeout`` and exit 0; a second
signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from llmgw.observe import logs
from llmgw.runtime import build_runtime
from llmgw.server.appkeys import METRICS, POOL, STATES, STORE
from llmgw.server.connections import ConnectionCap
from llmgw.server.reload import ReloadResult, watch

log = logging.getLogger(__name__)

MANAGE_LOGGING = web.AppKey("manage_logging", bool)
# How long a connection may sit idle, or take to send a request's head (slowloris): the
# same 75 s as nginx and aiohttp's run_app (aiohttp's own default is an hour).
KEEPALIVE_TIMEOUT = 75.0


def handler_options() -> dict[str, Any]:
    """How every connection is handled (the tests' servers too): request bodies are
    never inflated (a compressed body is refused with 415, see server/body.py)."""
    return {"access_log": None, "keepalive_timeout": KEEPALIVE_TIMEOUT, "auto_decompress": False}


async def reload_config(app: web.Application, trigger: str) -> ReloadResult:
    store = app[STORE]
    before = store.current
    result = await store.reload(
        lambda config: build_runtime(config, app[STATES], app[POOL]), trigger
    )
    metrics = app[METRICS]
    if result.result != "unchanged" or trigger != "file":
        metrics.config_reloads.labels(result.result).inc()
    after = store.current
    if after is not before:
        metrics.config_info.remove(before.digest)
        metrics.config_info.labels(after.digest).set(1)
        if app.get(MANAGE_LOGGING) and after.config.logging != before.config.logging:
            logs.configure(after.config.logging.level, after.config.logging.format)
        after.announce()
    return result


async def config_watcher(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: watch the config file for as long as the app runs."""
    path = app[STORE].path
    if path is None:
        yield
        return
    stop = asyncio.Event()
    task = asyncio.create_task(watch(path, lambda: reload_config(app, "file"), stop))
    yield
    stop.set()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def settle_garbage_collector() -> None:
    """Move everything built at startup out of the collector's sight and collect less
    often: a request leaves few cycles, and with the defaults full collections of the
    long-lived cache and limiter objects cost a fifth of the CPU and 100 ms pauses."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


@contextlib.asynccontextmanager
async def listening(
    app: web.Application,
    host: str,
    port: int,
    shutdown_timeout: float,
    metrics: tuple[web.Application, int] | None = None,
    max_connections: int = 0,
) -> AsyncIterator[list[tuple[str, int]]]:
    """Serve ``app`` on host:port (at most ``max_connections`` open, 0 = unbounded)
    and, given ``metrics`` (its app and port), the metrics listener on the same host;
    yield the addresses bound (main first). The metrics runner starts after the main
    app, whose state it reads, and stops before it."""
    options = handler_options()
    runner = web.AppRunner(
        app, handler_cancellation=True, shutdown_timeout=shutdown_timeout, **options
    )
    await runner.setup()
    assert runner.server is not None
    accept = ConnectionCap(runner.server, max_connections, options)
    loop = asyncio.get_running_loop()
    runners = [runner]
    listener: asyncio.AbstractServer | None = None
    try:
        listener = await loop.create_server(
            accept, host, port, reuse_address=True, backlog=max(128, min(max_connections, 4096))
        )
        bound = [sock.getsockname()[:2] for sock in listener.sockets]
        if metrics is not None:
            side = web.AppRunner(metrics[0], **options)
            await side.setup()
            runners.insert(0, side)
            await web.TCPSite(side, host, metrics[1], reuse_address=True).start()
            bound += [address for address in side.addresses]
        yield bound
    finally:
        if listener is not None:
            listener.close()  # stop accepting; connections in flight drain below
        for each in runners:
            await each.cleanup()


async def serve(
    app: web.Application,
    host: str,
    port: int,
    shutdown_timeout: float,
    metrics: tuple[web.Application, int] | None = None,
    max_connections: int = 0,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_stop(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(128 + signum)
        log.info(
            "%s: draining (up to %ss), then exiting", signal.Signals(signum).name, shutdown_timeout
        )
        app[STORE].stopping = True
        stop.set()

    try:
        async with listening(app, host, port, shutdown_timeout, metrics, max_connections):
            settle_garbage_collector()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, on_stop, signum)
            loop.add_signal_handler(
                signal.SIGHUP, lambda: asyncio.ensure_future(reload_config(app, "sighup"))
            )
            log.info("listening on %s:%s", host, port)
            if metrics is not None:
                log.info("serving /metrics on %s:%s", host, metrics[1])
            await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
    log.info("stopped")
