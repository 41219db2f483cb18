"""Prometheus metrics on one object with its own registry (SPEC §7).

Every test app gets its own ``Metrics``, so there are no duplicated time series and
no module globals. Label values are bounded: provider and model labels only ever
hold configured names (``other`` for anything else), status is an HTTP code the
gateway itself answered, cache is hit/miss/bypass.
"""

from __future__ import annotations

import collections
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Self

import prometheus_client
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# LLM calls span milliseconds to minutes.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# The gateway's own share should stay well under a millisecond.
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)

CIRCUIT_STATES = {"closed": 0, "open": 1, "half_open": 2}


class _Plain:
    """A child's value without prometheus_client's lock: every labelled series is
    updated and scraped on the event loop's thread, so a lock only costs (it was a
    tenth of the gateway's own CPU per request in the profile)."""

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0.0

    def inc(self, amount: float) -> None:
        self._value += amount

    def set(self, value: float, timestamp: float | None = None) -> None:
        self._value = value

    def get(self) -> float:
        return self._value

    def set_exemplar(self, exemplar: object) -> None:
        pass

    def get_exemplar(self) -> None:
        return None


def _unlocked(child: Any) -> Any:
    """``child`` with its values made ``_Plain`` (counter and gauge ``_value``,
    histogram ``_sum`` and ``_buckets``)."""
    if hasattr(child, "_value"):
        child._value = _Plain()
    if hasattr(child, "_buckets"):
        child._sum = _Plain()
        child._buckets = [_Plain() for _ in child._buckets]
    return child


class _KeptChildren:
    """``labels()`` that keeps each child: prometheus_client validates the values and
    takes a lock on every call, a cost paid several times per request otherwise. Label
    sets are bounded (see the module docstring), so the dict stays small. Children
    are made lock-free (``_Plain``): only the event loop's thread touches them."""

    _kept: dict[tuple[object, ...], Any]

    def labels(self, *values: object, **by_name: object) -> Self:
        kept = self.__dict__.get("_kept")
        if kept is None:
            kept = self._kept = {}
        if by_name:
            return super().labels(*values, **by_name)  # type: ignore[misc, no-any-return]
        child = kept.get(values)
        if child is None:
            child = kept[values] = _unlocked(super().labels(*values))  # type: ignore[misc]
        return child  # type: ignore[no-any-return]


# The per-request updates below skip prometheus_client's checks for a series whose
# value is ``_Plain`` (``_unlocked``): a kept child, observable by construction. Any
# other series (an unlabelled one still locked, a parent missing its labels, an
# exemplar) goes through the library's method, which checks and raises as before.


class Counter(_KeptChildren, prometheus_client.Counter):
    def inc(self, amount: float = 1, exemplar: dict[str, str] | None = None) -> None:
        value = self.__dict__.get("_value")
        if type(value) is _Plain and amount >= 0 and not exemplar:
            value._value += amount
        else:
            super().inc(amount, exemplar)


class Histogram(_KeptChildren, prometheus_client.Histogram):
    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        """The sum, then the first bucket whose bound is not below ``amount``: found by
        bisection, the bucket the library's loop stops at (NaN, in no bucket, is its)."""
        total = self.__dict__.get("_sum")
        if type(total) is _Plain and not exemplar and amount == amount:
            total._value += amount
            self._buckets[bisect_left(self._upper_bounds, amount)]._value += 1
        else:
            super().observe(amount, exemplar)


class Gauge(_KeptChildren, prometheus_client.Gauge):
    """Children are kept: a series removed with ``remove`` must not be set again."""

    def inc(self, amount: float = 1) -> None:
        value = self.__dict__.get("_value")
        if type(value) is _Plain and not self._is_most_recent:
            value._value += amount
        else:
            super().inc(amount)

    def dec(self, amount: float = 1) -> None:
        value = self.__dict__.get("_value")
        if type(value) is _Plain and not self._is_most_recent:
            value._value -= amount
        else:
            super().dec(amount)


class Tally:
    """A counter for a per-request hot path, kept as plain ints and turned into a
    metric at scrape time: ``Counter.labels(...).inc()`` takes a lock and checks its
    arguments on every call. One per ``Metrics``; labels bounded as above."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self._name, self._documentation, self._labels = name, documentation, list(labels)
        self.counts: collections.Counter[tuple[str, ...]] = collections.Counter()

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labels)
        for values, count in sorted(self.counts.items()):
            family.add_metric(list(values), count)
        yield family


PoolFigures = Callable[[], Mapping[str, tuple[int, int, int]]]


class UpstreamConnections:
    """The provider pool's connections per provider, read from the pool at scrape
    time (nothing is counted on the request path): ``source`` is
    ``http.client.Pool.figures``, set when the pool is made."""

    def __init__(self) -> None:
        self.source: PoolFigures | None = None

    def collect(self) -> Iterator[Metric]:
        held = GaugeMetricFamily(
            "llmgw_upstream_connections",
            "Connections to providers by state: open (all), idle (kept for reuse).",
            labels=["provider", "state"],
        )
        created = CounterMetricFamily(
            "llmgw_upstream_connections_created",
            "Connections opened to providers.",
            labels=["provider"],
        )
        figures = self.source() if self.source is not None else {}
        for provider, (open_, idle, made) in sorted(figures.items()):
            held.add_metric([provider, "open"], open_)
            held.add_metric([provider, "idle"], idle)
            created.add_metric([provider], made)
        yield held
        yield created


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "llmgw_requests",
            "Client requests answered.",
            ["endpoint", "model", "provider", "status", "cache"],
            registry=registry,
        )
        self.duration = Histogram(
            "llmgw_request_duration_seconds",
            "Time from request received to response complete.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.ttfb = Histogram(
            "llmgw_time_to_first_byte_seconds",
            "Time from request received to the first body byte sent to the client.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.overhead = Histogram(
            "llmgw_overhead_seconds",
            "Time spent in the gateway itself, upstream waiting excluded.",
            ["endpoint"],
            buckets=_OVERHEAD_BUCKETS,
            registry=registry,
        )
        self.upstream_attempts = Counter(
            "llmgw_upstream_attempts",
            "Upstream attempts by outcome: success, timeout, status_NNN, stream_error, "
            "connect_error or which (dns_error, tls_error, connect_refused, connect_reset, ...), "
            "hedge_lost (a hedged racer cancelled because another answered first).",
            ["provider", "outcome"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "llmgw_fallbacks",
            "Moves from one target of a chain to the next.",
            ["model"],
            registry=registry,
        )
        self.inflight = _unlocked(
            Gauge("llmgw_inflight_requests", "Client requests in flight.", registry=registry)
        )
        self.circuit_state = Gauge(
            "llmgw_circuit_state",
            "Circuit breaker per provider: 0 closed, 1 open, 2 half-open.",
            ["provider"],
            registry=registry,
        )
        self.config_reloads = Counter(
            "llmgw_config_reloads",
            "Config loads and reloads by result.",
            ["result"],
            registry=registry,
        )
        self.tokens = Counter(
            "llmgw_tokens",
            "Tokens used, from the provider's usage or estimated (kind: prompt, completion).",
            ["provider", "model", "key", "kind"],
            registry=registry,
        )
        self.cost = Counter(
            "llmgw_cost_usd",
            "Cost in USD of the tokens used, at the configured or built-in prices.",
            ["provider", "model", "key"],
            registry=registry,
        )
        self.ratelimit_rejections = Counter(
            "llmgw_ratelimit_rejections",
            "Requests refused with 429 by a limit, by the scope that refused (key, model, global).",
            ["scope"],
            registry=registry,
        )
        self.cache_requests = Counter(
            "llmgw_cache_requests",
            "Cacheable requests by cache result (hit, miss, bypass) and how a hit "
            "matched (exact, semantic; none for misses and bypasses).",
            ["result", "match"],
            registry=registry,
        )
        self.cache_size = Gauge(
            "llmgw_cache_size_bytes", "Bytes held by the memory cache.", registry=registry
        )
        # counts[strategy, target] += 1, on every routed request
        self.routing_decisions = Tally(
            "llmgw_routing_decisions",
            "Smart routing decisions (virtual models and pools) by strategy and first target "
            "(a configured provider/model).",
            ["strategy", "target"],
        )
        registry.register(self.routing_decisions)
        self.hedges = Counter(
            "llmgw_hedges",
            "Hedged requests by outcome: primary (the first target won), hedge (a later "
            "target won), failed (every raced target failed).",
            ["outcome"],
            registry=registry,
        )
        self.spans_dropped = Counter(
            "llmgw_trace_spans_dropped",
            "Finished trace spans not exported: the queue was full or the collector failed.",
            registry=registry,
        )
        self.admin_signin_failures = Counter(
            "llmgw_admin_signin_failures",
            "Dashboard sign-ins refused for a wrong admin key.",
            registry=registry,
        )
        self.ledger_dropped = Counter(
            "llmgw_ledger_dropped",
            "Rows left out of the usage ledger (its buffer full while the database "
            "could not be written, or still held at exit).",
            registry=registry,
        )
        self.budget_spend_dropped = Counter(
            "llmgw_budget_spend_dropped",
            "Budget spend (one scope's delta each) never written to the database: too many "
            "scopes waiting while it could not be written, or still held at exit.",
            registry=registry,
        )
        self.budget_alerts = Counter(
            "llmgw_budget_alerts",
            "Budget alerts fired, by scope kind (key, budget_key, global) and fraction.",
            ["scope", "fraction"],
            registry=registry,
        )
        self.budget_rejections = Counter(
            "llmgw_budget_rejections",
            "Requests refused with 429 budget_exceeded, by scope kind.",
            ["scope"],
            registry=registry,
        )
        self.connections = UpstreamConnections()
        registry.register(self.connections)
        self.config_info = prometheus_client.Gauge(
            "llmgw_config_info",
            "The running config (value 1), by hash.",
            ["hash"],
            registry=registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
