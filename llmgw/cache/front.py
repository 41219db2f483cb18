"""The cache of the process: which store serves (memory or Redis, kept across
reloads while the backend settings stay the same), and the flights in progress."""

from __future__ import annotations

import asyncio

from prometheus_client.metrics import Counter

from llmgw.cache.coalesce import Flights
from llmgw.cache.entry import Store
from llmgw.cache.hits import HitCalls
from llmgw.cache.memory import MemoryStore
from llmgw.cache.redis import RedisStore
from llmgw.cache.semantic import SemanticCache
from llmgw.cache.semantic_redis import RedisVectors
from llmgw.config.schema import CacheConfig
from llmgw.observe.metrics import Metrics


class ResponseCache:
    """The cache of the process: its store (kept across reloads while the backend
    settings stay the same) and the flights of identical requests in progress."""

    def __init__(self) -> None:
        self.flights = Flights()
        self.hit_calls = HitCalls()  # a repeated hit's call, parsed and keyed once
        self.hits = 0
        self.misses = 0
        self._closing: set[asyncio.Future[None]] = set()
        self._store: Store | None = None
        self._backend: tuple[str, str | None] | None = None
        self._semantic: SemanticCache | None = None
        self._semantic_backend: tuple[str, str | None] | None = None
        self._settings: CacheConfig | None = None  # what ``_store`` was last checked against
        # llmgw_cache_requests' series by (result, match), for the Metrics they belong
        # to: ``labels()`` looks its series up by name each time (µs per request).
        self._counters: tuple[Metrics | None, dict[tuple[str, str], Counter]] = (None, {})

    def counter(self, metrics: Metrics, result: str, match: str) -> Counter:
        """``metrics.cache_requests``' series of (``result``, ``match``)."""
        held, series = self._counters
        if held is not metrics:
            series = {}
            self._counters = (metrics, series)
        found = series.get((result, match))
        if found is None:
            found = series[(result, match)] = metrics.cache_requests.labels(result, match)
        return found

    def store(self, settings: CacheConfig) -> Store:
        if settings is self._settings and self._store is not None:
            return self._store  # the same snapshot's settings: checked already
        self._settings = settings
        backend = (settings.backend, settings.redis_url if settings.backend == "redis" else None)
        if self._store is None or backend != self._backend:
            self._retire()
            self._store = self._open(settings)
            self._backend = backend
        if isinstance(self._store, MemoryStore) and self._store.max_bytes != settings.max_size:
            self._store.max_bytes = settings.max_size
            self._store.shrink()
        return self._store

    def current(self) -> Store | None:
        return self._store

    def semantic(self, settings: CacheConfig) -> SemanticCache | None:
        """The semantic index (SPEC §13) when on: kept across reloads while the
        backend stays the same, shared through Redis under ``backend: redis``."""
        if not settings.semantic.enabled:
            return None
        backend = (settings.backend, settings.redis_url if settings.backend == "redis" else None)
        if self._semantic is None or backend != self._semantic_backend:
            self._retire_semantic()
            self._semantic = SemanticCache(settings.semantic)
            if settings.backend == "redis" and settings.redis_url:
                self._semantic.sync = RedisVectors(settings.redis_url, self._semantic.index)
            self._semantic_backend = backend
        self._semantic.resize(settings.semantic.max_entries)
        return self._semantic

    def current_semantic(self) -> SemanticCache | None:
        return self._semantic

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()
        if self._semantic is not None:
            await self._semantic.close()

    def _open(self, settings: CacheConfig) -> Store:
        if settings.backend == "redis" and settings.redis_url:
            return RedisStore(settings.redis_url)
        return MemoryStore(settings.max_size)

    def _retire_semantic(self) -> None:
        old = self._semantic
        if old is not None:
            task = asyncio.ensure_future(old.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _retire(self) -> None:
        old = self._store
        if old is not None:
            task = asyncio.ensure_future(old.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
