"""The memory store: bounded by bytes (entries counted by the memory they take),
the least recently used evicted first, TTL enforced, O(1) per operation."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from llmgw.cache.entry import Entry, Stats


class MemoryStore:
    """LRU + TTL, bounded by bytes; every operation O(1) (eviction amortised)."""

    def __init__(self, max_bytes: int, clock: Any = time.time) -> None:
        self.max_bytes = max_bytes
        self.stats = Stats()
        self._clock = clock
        self._entries: OrderedDict[str, tuple[Entry, float]] = OrderedDict()
        self._bytes = 0

    async def get(self, key: str) -> Entry | None:
        found = self._entries.get(key)
        if found is None:
            return None
        entry, expires = found
        if self._clock() >= expires:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    async def put(self, key: str, entry: Entry, ttl: float) -> None:
        size = entry.size
        if size > self.max_bytes or ttl <= 0:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (entry, self._clock() + ttl)
        self._bytes += size
        self.shrink()

    def shrink(self) -> None:
        """Evict least recently used entries until within ``max_bytes``."""
        while self._bytes > self.max_bytes and self._entries:
            key = next(iter(self._entries))
            self._drop(key)
            self.stats.evictions += 1

    async def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    async def sizes(self) -> tuple[int, int]:
        return len(self._entries), self._bytes

    def keys(self) -> list[str]:
        """Least recently used first (for tests and debugging)."""
        return list(self._entries)

    async def close(self) -> None:
        await self.clear()

    def _drop(self, key: str) -> None:
        entry, _ = self._entries.pop(key)
        self._bytes -= entry.size
