"""Exact-match response cache (SPEC §4): keys, client policy, and the memory store.

The key is a hash of the endpoint, the requested model and the canonical request
body (keys sorted at every depth; ``stream`` and ``stream_options`` in it, since a
replay must carry exactly the chunks the client asked for; ``user`` out), plus the
client key's name when ``cache.scope`` is ``key``. An entry holds
the exact bytes sent to the client (a stream's events joined in one piece), so a hit
replays them identically.

Every client header the gateway forwards upstream (``Call.headers``, e.g.
``anthropic-beta``) is part of the key too: names lower-cased, values as sent. What
can change the provider's answer must change the key.

The memory store is bounded by bytes (entries counted by the memory they take), evicts
the least recently used first, enforces the TTL, and is O(1) per operation.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from .coalesce import Flights
from .config.schema import CacheConfig
from .providers import Call

# What an entry costs beyond its bytes, measured with tracemalloc over many entries
# (tests/test_cache_store.py): its key, the Entry, the store's tuple and slot, the
# numbers, and the headers of its strings; then each chunk's bytes header and slot.
ENTRY_OVERHEAD = 700
CHUNK_OVERHEAD = 41
_IGNORED_FIELD = "user"
_MAX_AGE = re.compile(r"max-age\s*=\s*(\d+)")


@dataclass(frozen=True, slots=True)
class Entry:
    status: int
    content_type: str
    chunks: tuple[bytes, ...]
    stream: bool
    stored_at: float  # unix time
    provider: str
    upstream_model: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @property
    def size(self) -> int:
        return (
            ENTRY_OVERHEAD
            + len(self.content_type)
            + len(self.upstream_model)
            + sum(CHUNK_OVERHEAD + len(chunk) for chunk in self.chunks)
        )

    def age(self, now: float) -> int:
        return max(0, int(now - self.stored_at))


@dataclass(frozen=True, slots=True)
class Policy:
    """What the client's Cache-Control allows for this request."""

    read: bool = True
    write: bool = True
    max_age: int | None = None

    @classmethod
    def from_header(cls, header: str | None) -> Policy:
        if not header:
            return _DEFAULT_POLICY
        value = header.lower()
        match = _MAX_AGE.search(value)
        max_age = int(match.group(1)) if match else None
        return cls(
            read="no-cache" not in value and max_age != 0,
            write="no-store" not in value,
            max_age=max_age,
        )

    def accepts(self, entry: Entry, now: float) -> bool:
        return self.max_age is None or entry.age(now) <= self.max_age


_DEFAULT_POLICY = Policy()


def cache_key(call: Call, scope: str | None) -> str:
    """The entry's key; ``scope`` is the client key's name under ``scope: key``."""
    body: Mapping[str, Any] = call.body
    if _IGNORED_FIELD in body:
        body = {k: v for k, v in body.items() if k != _IGNORED_FIELD}
    canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256(canonical)
    digest.update(b"\x00" + call.endpoint.encode() + b"\x00" + call.model.encode())
    if call.headers:  # what reaches the provider besides the body (e.g. anthropic-beta)
        sent = sorted((name.lower(), value) for name, value in call.headers.items())
        digest.update(b"\x00headers:" + orjson.dumps(sent))
    if scope is not None:
        digest.update(b"\x00key:" + scope.encode())
    return "llmgw:cache:" + digest.hexdigest()


@dataclass
class Stats:
    evictions: int = 0


class Store(Protocol):
    """Where entries live: in this process, or in Redis shared by every replica."""

    stats: Stats

    async def get(self, key: str) -> Entry | None: ...
    async def put(self, key: str, entry: Entry, ttl: float) -> None: ...
    async def clear(self) -> None: ...
    async def sizes(self) -> tuple[int, int]: ...  # (entries, bytes)
    async def close(self) -> None: ...


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


def encode_entry(entry: Entry) -> bytes:
    """An entry as bytes for a shared store: a JSON header line, then the chunks."""
    header = orjson.dumps(
        {
            "status": entry.status,
            "content_type": entry.content_type,
            "stream": entry.stream,
            "stored_at": entry.stored_at,
            "provider": entry.provider,
            "upstream_model": entry.upstream_model,
            "prompt_tokens": entry.prompt_tokens,
            "completion_tokens": entry.completion_tokens,
            "lengths": [len(chunk) for chunk in entry.chunks],
        }
    )
    return header + b"\n" + b"".join(entry.chunks)


def decode_entry(data: bytes) -> Entry | None:
    """The inverse of ``encode_entry``; None for anything malformed."""
    header, sep, payload = data.partition(b"\n")
    try:
        meta = orjson.loads(header) if sep else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(meta, dict) or sum(meta.get("lengths", [-1])) != len(payload):
        return None
    chunks, at = [], 0
    for length in meta["lengths"]:
        chunks.append(payload[at : at + length])
        at += length
    return Entry(
        status=meta["status"],
        content_type=meta["content_type"],
        chunks=tuple(chunks),
        stream=meta["stream"],
        stored_at=meta["stored_at"],
        provider=meta["provider"],
        upstream_model=meta["upstream_model"],
        prompt_tokens=meta.get("prompt_tokens"),
        completion_tokens=meta.get("completion_tokens"),
    )


class ResponseCache:
    """The cache of the process: its store (kept across reloads while the backend
    settings stay the same) and the flights of identical requests in progress."""

    def __init__(self) -> None:
        self.flights = Flights()
        self.hits = 0
        self.misses = 0
        self._closing: set[asyncio.Future[None]] = set()
        self._store: Store | None = None
        self._backend: tuple[str, str | None] | None = None

    def store(self, settings: CacheConfig) -> Store:
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

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()

    def _open(self, settings: CacheConfig) -> Store:
        if settings.backend == "redis" and settings.redis_url:
            from .cache_redis import RedisStore

            return RedisStore(settings.redis_url)
        return MemoryStore(settings.max_size)

    def _retire(self) -> None:
        old = self._store
        if old is not None:
            task = asyncio.ensure_future(old.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
