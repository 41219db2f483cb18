"""What the dashboard draws live: per-second figures of the last minutes, and the most
recent requests' access lines. Both are bounded rings in memory, fed by ``accounting``
with each client request as it ends.

A hedged request's racers that lost after they had begun answering were billed too
(``hedge.charged``): their cost is in the second's cost and the day's, and the request's
line lists them (``hedge_losers``, the ledger's shape), their cost not in its own.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from llmgw.core import RequestContext
from llmgw.hedge import charged

SECONDS = 600  # how far back the live charts reach
SAMPLES = 256  # latencies kept per second for its percentiles
RECENT = 1000  # access lines kept for /api/v1/requests
Racer = dict[str, Any]  # a charged hedge loser's spend, as the ledger lists it


class Second:
    __slots__ = ("cache_hits", "cache_lookups", "cost_usd", "errors", "latencies", "requests", "t")

    def __init__(self, t: int) -> None:
        self.t = t
        self.requests = 0
        self.errors = 0
        self.cache_hits = 0
        self.cache_lookups = 0
        self.cost_usd = 0.0
        self.latencies: list[float] = []

    def as_json(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        return {
            "t": self.t,
            "requests": self.requests,
            "errors": self.errors,
            "p50_ms": _percentile(ordered, 0.50),
            "p95_ms": _percentile(ordered, 0.95),
            "cache_hits": self.cache_hits,
            "cache_lookups": self.cache_lookups,
            "cost_usd": round(self.cost_usd, 9),
        }


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


class LiveStats:
    """A ring of per-second figures (requests, errors, latency, cache, cost) and the
    cost of the current UTC day."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._seconds: deque[Second] = deque(maxlen=SECONDS)
        self._day = -1
        self.cost_today = 0.0
        # (when, access line fields, its charged hedge losers' spend): the line a
        # reader sees is made when it is read
        self.recent: deque[Recent] = deque(maxlen=RECENT)

    def add(self, fields: dict[str, Any], ctx: RequestContext | None = None) -> None:
        """One client request, from its access log fields; ``ctx``, its context, for
        its hedge losers (their cost filled in by usage)."""
        now = self.clock()
        second = int(now)
        seconds = self._seconds
        if not seconds or seconds[-1].t != second:
            seconds.append(Second(second))
        bucket = seconds[-1]
        bucket.requests += 1
        status = fields.get("status") or 0
        if status >= 500 or status == 429:
            bucket.errors += 1
        cache = fields.get("cache")
        if cache in ("HIT", "MISS"):
            bucket.cache_lookups += 1
            bucket.cache_hits += cache == "HIT"
        if len(bucket.latencies) < SAMPLES:
            bucket.latencies.append(fields.get("latency_ms") or 0.0)
        cost = fields.get("cost_usd") or 0.0
        racers: tuple[Racer, ...] = ()
        if ctx is not None and ctx.hedge_losers:  # most raced nobody: nothing more to do
            racers = _racers(ctx)
            cost += sum(racer["cost_usd"] or 0.0 for racer in racers)
        bucket.cost_usd += cost
        day = second // 86400
        if day != self._day:
            self._day, self.cost_today = day, 0.0
        self.cost_today += cost
        self.recent.append((round(now, 3), fields, racers))

    def window(self, span: int) -> dict[str, Any]:
        """The last ``span`` seconds, every second present (empty ones as zeros)."""
        now = int(self.clock())
        kept = {s.t: s for s in self._seconds if s.t > now - span}
        series = [(kept.get(t) or Second(t)).as_json() for t in range(now - span + 1, now + 1)]
        today = self.cost_today if self._day == now // 86400 else 0.0
        return {"now": now, "seconds": series, "cost_today_usd": round(today, 9)}

    def requests(
        self, limit: int, key: str | None, model: str | None, status: str | None
    ) -> list[dict[str, Any]]:
        """The most recent requests, newest first, filtered (``status``: ``404`` or
        a class such as ``5xx``)."""
        lines = _filtered(reversed(self.recent), key, model, status)
        return [
            {"time": when, **fields, "hedge_losers": list(racers)}
            for when, fields, racers in _limited(lines, limit)
        ]


Recent = tuple[float, dict[str, Any], tuple[Racer, ...]]


def _racers(ctx: RequestContext) -> tuple[Racer, ...]:
    return tuple(
        {
            "provider": loser.provider,
            "upstream_model": loser.upstream_model,
            "prompt_tokens": loser.prompt_tokens,
            "completion_tokens": loser.completion_tokens,
            "cost_usd": loser.cost_usd,
        }
        for loser in charged(ctx)
    )


def _filtered(
    lines: Iterable[Recent], key: str | None, model: str | None, status: str | None
) -> Iterable[Recent]:
    for entry in lines:
        line = entry[1]
        if key and line.get("key") != key:
            continue
        if model and line.get("model") != model:
            continue
        if status and not _status_matches(line.get("status") or 0, status):
            continue
        yield entry


def _status_matches(value: int, wanted: str) -> bool:
    if len(wanted) == 3 and wanted.endswith("xx") and wanted[0].isdigit():
        return value // 100 == int(wanted[0])
    return str(value) == wanted


def _limited(lines: Iterable[Recent], limit: int) -> Iterable[Recent]:
    for count, line in enumerate(lines):
        if count >= limit:
            return
        yield line
