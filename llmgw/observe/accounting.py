"""The end of every request: its access log line and its metrics, written in batches.

A request's figures (status, latency, time to first byte, tokens) are fixed when it
ends; writing them out (one JSON line, a handful of metric updates) waits for the end
of the event loop's current turn, where every request that ended in that turn is
written together. Written one at a time between requests, that code and its data
are cold each time; together they cost a tenth less CPU per request (interleaved
A/B, cache hits). Nothing waits longer than the loop's turn, and ``/metrics`` writes
what is pending before it answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from llmgw.core import RequestContext
from llmgw.observe.live import LiveStats
from llmgw.observe.logs import AccessLog
from llmgw.observe.metrics import Metrics
from llmgw.observe.reservoir import Reservoir

log = logging.getLogger(__name__)
access_log = AccessLog(logging.getLogger("llmgw.access"))


class Accounting:
    """Requests that ended in this turn of the loop, to be logged and counted."""

    __slots__ = (
        "_live",
        "_metrics",
        "_pending",
        "_timers",
        "errors",
        "latencies",
        "ledger",
        "requests",
    )

    def __init__(self, metrics: Metrics, live: LiveStats | None = None) -> None:
        self._metrics = metrics
        self._live = live
        self._pending: list[tuple[RequestContext, bool, float]] = []
        # Per endpoint, its duration and overhead histograms (every request of it
        # observes both): one dict lookup instead of two labels() calls.
        self._timers: dict[str, tuple[Any, Any]] = {}
        # Where each ended request's row goes too (the usage ledger), when there is one.
        self.ledger: Callable[[RequestContext, float], None] | None = None
        # Client API totals since start (/v1/health/metrics).
        self.requests = 0
        self.errors = 0  # answered with a status of 400 or more (499 included)
        self.latencies = Reservoir(1024)  # recent latencies, ms

    def add(self, ctx: RequestContext, client_api: bool) -> None:
        """``ctx``'s request is over: its latency is taken now, the rest soon."""
        pending = self._pending
        pending.append((ctx, client_api, time.perf_counter() - ctx.started))
        if len(pending) == 1:
            asyncio.get_running_loop().call_soon(self.drain)

    def drain(self) -> None:
        """Log and count every pending request, in the order they ended."""
        batch, self._pending = self._pending, []
        metrics = self._metrics
        live, ledger = self._live, self.ledger
        for ctx, client_api, latency in batch:
            if ctx.endpoint is not None:
                self.requests += 1
                self.errors += ctx.status >= 400
                self.latencies.add(latency * 1000)
            try:
                fields = account(ctx, metrics, client_api, latency, self._timers)
                if live is not None and ctx.endpoint is not None:
                    live.add(fields, ctx)  # (ctx: its hedge losers' spend)
                if ledger is not None:
                    ledger(ctx, latency)
            except Exception:  # one bad record must not cost the others their line
                log.exception("could not account for request %s", ctx.request_id)


def account(
    ctx: RequestContext,
    metrics: Metrics,
    client_api: bool,
    latency: float,
    timers: dict[str, tuple[Any, Any]],
) -> dict[str, Any]:
    """One request's access log line and metrics; returns the line's fields."""
    fields = ctx.log_fields(latency)
    if ctx.prompt is not None:
        fields["prompt"] = ctx.prompt
    if ctx.trace is not None:
        fields["trace_id"] = ctx.trace.trace_id
    access_log.log(logging.INFO if client_api or ctx.status >= 500 else logging.DEBUG, fields)
    if ctx.endpoint is None:
        return fields
    endpoint = ctx.endpoint
    metrics.requests.labels(
        endpoint,
        ctx.model_label,
        ctx.provider or "none",
        str(ctx.status),
        ctx.cache.lower() if ctx.cache else "bypass",
    ).inc()
    timer = timers.get(endpoint)
    if timer is None:
        timer = timers[endpoint] = (
            metrics.duration.labels(endpoint),
            metrics.overhead.labels(endpoint),
        )
    timer[0].observe(latency)
    if ctx.first_byte is not None:  # (its series only once a first byte was timed)
        metrics.ttfb.labels(endpoint).observe(ctx.first_byte - ctx.started)
    timer[1].observe(max(0.0, latency - ctx.upstream_wait))
    return fields
