"""A config snapshot made runnable: providers with their adapters and transports,
and the routing tables. Built whole, then swapped in one reference on reload.

What must outlive a snapshot (circuit breakers, concurrency slots, per-provider
counters) is a ``ProviderState`` kept in ``ProviderStates`` by provider name, so a
reload that keeps a provider keeps its state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from llmgw.adapter import Adapter
from llmgw.config import GatewayConfig, ProviderConfig, digest
from llmgw.http import client as http_client
from llmgw.http.public_fetch import AddressPolicy
from llmgw.limits.clientip import Network, networks
from llmgw.observe.reservoir import Reservoir
from llmgw.observe.usage import PriceBook
from llmgw.routing.candidates import Group, Live, group
from llmgw.routing.profiles import Facts, facts_of, profile_table
from llmgw.routing.router import CircuitBreaker, Router
from llmgw.upstream import HttpTransport, LocalTransport, Timeouts, Transport

log = logging.getLogger(__name__)

MAX_TRACKED = 256  # upstream models whose latency a provider's state keeps


class ProviderState:
    """One provider's live state and counters, kept across reloads."""

    __slots__ = (
        "_last_error",
        "_limit",
        "_semaphore",
        "breaker",
        "errors",
        "inflight",
        "last_error_at",
        "latencies",
        "latency_ms",
        "requests",
        "target_latency_ms",
    )

    def __init__(self, clock: Callable[[], float]) -> None:
        self.breaker = CircuitBreaker(clock)
        self.requests = 0
        self.errors = 0
        self.inflight = 0
        self.latency_ms: float | None = None  # moving average of time to headers
        self.target_latency_ms: dict[str, float] = {}  # per upstream model, same average
        self.latencies = Reservoir(256)  # recent times to headers, ms (p50/p95)
        self._last_error: str | None = None
        self.last_error_at: float | None = None  # unix time of the last failure
        self._limit = 0
        self._semaphore: asyncio.Semaphore | None = None

    def semaphore(self, limit: int) -> asyncio.Semaphore | None:
        """The slots for ``max_concurrency`` (None when unlimited)."""
        if limit != self._limit:
            self._limit = limit
            self._semaphore = asyncio.Semaphore(limit) if limit else None
        return self._semaphore

    @property
    def last_error(self) -> str | None:
        """The kind of the last failed attempt (its time: ``last_error_at``)."""
        return self._last_error

    @last_error.setter
    def last_error(self, kind: str | None) -> None:
        self._last_error = kind
        self.last_error_at = time.time()

    def observe_latency(self, seconds: float, model: str | None = None) -> None:
        ms = seconds * 1000
        self.latencies.add(ms)
        self.latency_ms = ms if self.latency_ms is None else self.latency_ms * 0.8 + ms * 0.2
        if model is not None:  # per target, for smart routing (plan.py)
            if len(self.target_latency_ms) >= MAX_TRACKED and model not in self.target_latency_ms:
                return  # "*" providers serve any name: keep the table bounded
            last = self.target_latency_ms.get(model)
            self.target_latency_ms[model] = ms if last is None else last * 0.8 + ms * 0.2


@dataclass
class ProviderStates:
    clock: Callable[[], float] = time.monotonic
    _states: dict[str, ProviderState] = field(default_factory=dict)

    def get(self, name: str) -> ProviderState:
        state = self._states.get(name)
        if state is None:
            state = self._states[name] = ProviderState(self.clock)
        return state


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    config: ProviderConfig
    adapter: Adapter
    transport: Transport
    state: ProviderState
    timeouts: Timeouts
    disabled: str | None  # why it is skipped, or None when enabled

    def status(self) -> dict[str, Any]:
        """What the operator endpoints say of every provider (the health details and
        the providers' status add their own figures)."""
        state = self.state
        return {
            "type": self.config.type,
            "enabled": self.disabled is None,
            "disabled_reason": self.disabled,
            "circuit": state.breaker.state,
            "requests": state.requests,
            "errors": state.errors,
            "last_error": state.last_error,
        }


@dataclass(frozen=True, slots=True)
class Runtime:
    config: GatewayConfig
    digest: str
    providers: Mapping[str, Provider]
    router: Router
    fallback_on: frozenset[str | int]
    loaded_at: float
    # "provider/model" -> profile and price, of every candidate and pool target
    profiles: Mapping[str, Facts] = field(default_factory=lambda: MappingProxyType({}))
    trusted_proxies: tuple[Network, ...] = ()  # server.trusted_proxies, parsed once
    prices: PriceBook = field(default_factory=lambda: PriceBook(MappingProxyType({})))
    # What smart routing orders, precomputed (routing/candidates.py): the virtual
    # models' candidates and each pool's targets.
    candidates: Group | None = None
    pools: Mapping[str, Group] = field(default_factory=lambda: MappingProxyType({}))

    image_policy: AddressPolicy = field(
        default_factory=AddressPolicy
    )  # where image URLs may be fetched from

    def group(self, names: Sequence[str], weights: Sequence[int] | None = None) -> Group:
        """A group of any configured targets (an alias a request asks to reorder)."""
        live = {
            name: Live(p.disabled is not None, p.state.breaker, p.state.target_latency_ms)
            for name, p in self.providers.items()
        }
        return group(names, self._facts, live, weights, self.config.routing.min_quality)

    def _facts(self, name: str) -> Facts:
        return self.profiles.get(name) or facts_of(name, self.config)

    def announce(self) -> None:
        """Say once, at each load, what this config means for serving."""
        for provider in self.providers.values():
            if provider.disabled is not None:
                log.warning("provider %s is disabled: %s", provider.name, provider.disabled)
        if not self.config.auth.keys:
            log.warning("auth.keys is empty: every client is allowed without a key")

    def can_serve(self) -> bool:
        """Some provider is enabled and its circuit is not open."""
        return any(
            p.disabled is None and p.state.breaker.state != "open" for p in self.providers.values()
        )


def _route(name: str, settings: ProviderConfig) -> http_client.Route:
    """How the provider's calls travel (proxy, CA file, client certificate); the
    files were checked when the config was parsed."""
    return http_client.Route(
        name,
        proxy=settings.proxy,
        ca_file=settings.ca_file,
        client_cert=settings.client_cert,
        client_key=settings.client_key,
    )


def build_runtime(config: GatewayConfig, states: ProviderStates, pool: http_client.Pool) -> Runtime:
    providers: dict[str, Provider] = {}
    for name, settings in config.providers.items():
        adapter = Adapter.of(settings.type)
        disabled = None
        if adapter.needs_key(settings) and not settings.api_key:
            disabled = "api_key is empty"
        local = adapter.kind.local
        transport: Transport = (
            HttpTransport(pool, _route(name, settings))
            if local is None
            else LocalTransport(local, settings)
        )
        providers[name] = Provider(
            name=name,
            config=settings,
            adapter=adapter,
            transport=transport,
            state=states.get(name),
            timeouts=Timeouts(
                connect=settings.connect_timeout,
                head=settings.timeout,
                read=settings.read_timeout,
                response=settings.response_timeout,
            ),
            disabled=disabled,
        )
    enabled = {name: p.disabled is None for name, p in providers.items()}
    router = Router(config, enabled)
    runtime = Runtime(
        config=config,
        digest=digest(config),
        providers=MappingProxyType(providers),
        router=router,
        fallback_on=frozenset(config.routing.fallback_on),
        loaded_at=time.time(),
        profiles=profile_table(config, router.chat_targets),
        trusted_proxies=networks(config.server.trusted_proxies),
        image_policy=AddressPolicy(networks(config.server.image_fetch_allow)),
        prices=PriceBook(config.prices),
    )
    listed = config.routing.candidates
    names = list(listed) if listed is not None else [str(t) for t in router.chat_targets]
    pools = {
        alias: runtime.group([p.target for p in pool.targets], [p.weight for p in pool.targets])
        for alias, pool in router.pools.items()
    }
    return replace(runtime, candidates=runtime.group(names), pools=MappingProxyType(pools))
