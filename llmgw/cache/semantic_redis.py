"""The semantic index shared through Redis (``cache.backend: redis``).

The answers are the exact cache's Redis entries already; what is shared here is each
one's vector and partition: a hash ``llmgw:semantic:vectors`` (exact key → partition,
a newline, the float32 bytes) and a sorted set ``llmgw:semantic:lru`` (exact key →
last use), trimmed to ``max_entries`` oldest first. Every change is published on
``llmgw:semantic:events`` (``+key``, ``-key``, and ``*origin`` when a replica emptied
the cache: the others empty their index too); each replica subscribes and follows,
and at start loads the newest ``max_entries`` vectors. A Redis that cannot be reached
leaves each replica with what it has; it is logged, never a failed request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

import numpy as np
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from llmgw.cache.vectors import DimensionMismatch, Vector, VectorIndex

log = logging.getLogger(__name__)

VECTORS = "llmgw:semantic:vectors"
LRU = "llmgw:semantic:lru"
EVENTS = "llmgw:semantic:events"
_FAILURES = (RedisError, OSError, TimeoutError)
_RECONNECT_AFTER = 1.0  # seconds


class RedisVectors:
    """Keeps ``index`` in step with every replica's through Redis."""

    def __init__(self, url: str, index: VectorIndex) -> None:
        self._redis: Any = aioredis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        self._index = index
        self._origin = uuid.uuid4().hex  # a clear this replica made, already applied here
        self.ready = asyncio.Event()  # subscribed and loaded
        self._follow = asyncio.ensure_future(self._run())

    async def publish_add(self, key: str, partition: str, vector: Vector) -> None:
        data = partition.encode() + b"\n" + vector.astype(np.float32).tobytes()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(VECTORS, key, data).zadd(LRU, {key: self._now()})
                pipe.publish(EVENTS, b"+" + key.encode())
                await pipe.execute()
            extra = int(await self._redis.zcard(LRU)) - self._index.max_entries
            if extra > 0:
                for old, _ in await self._redis.zpopmin(LRU, extra):
                    await self.publish_remove(old.decode())
        except _FAILURES as exc:
            log.warning("semantic index not shared (redis): %s", type(exc).__name__)

    async def publish_touch(self, key: str) -> None:
        with contextlib.suppress(*_FAILURES):  # the eviction order is a hint; it was served
            await self._redis.zadd(LRU, {key: self._now()}, xx=True)

    async def publish_remove(self, key: str) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hdel(VECTORS, key).zrem(LRU, key).publish(EVENTS, b"-" + key.encode())
                await pipe.execute()
        except _FAILURES as exc:
            log.warning("semantic index removal not shared (redis): %s", type(exc).__name__)

    async def publish_clear(self) -> int | None:
        """Empty the shared index and tell every replica; how many vectors it held, or
        None when Redis did not answer (logged; the others keep theirs)."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hlen(VECTORS).delete(VECTORS, LRU)
                pipe.publish(EVENTS, b"*" + self._origin.encode())
                held, _, _ = await pipe.execute()
            return int(held)
        except _FAILURES as exc:
            log.warning("semantic index clear not shared (redis): %s", type(exc).__name__)
            return None

    async def close(self) -> None:
        self._follow.cancel()
        await asyncio.gather(self._follow, return_exceptions=True)
        await self._redis.aclose()

    def _now(self) -> float:
        return time.time()  # wall time: comparable across replicas

    async def _run(self) -> None:
        """Subscribe, load what is there, then follow; again after a lost connection."""
        while True:
            try:
                pubsub = self._redis.pubsub()
                async with pubsub:
                    await pubsub.subscribe(EVENTS)
                    await self._load()
                    self.ready.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            await self._apply(message["data"])
            except _FAILURES as exc:
                log.warning("semantic index not following redis: %s", type(exc).__name__)
                await asyncio.sleep(_RECONNECT_AFTER)

    async def _load(self) -> None:
        """The newest ``max_entries`` vectors (oldest first, so LRU order holds)."""
        keys = await self._redis.zrange(LRU, -self._index.max_entries, -1)
        for start in range(0, len(keys), 500):
            batch = keys[start : start + 500]
            for key, data in zip(batch, await self._redis.hmget(VECTORS, batch), strict=True):
                if data is not None:
                    self._add(key.decode(), data)

    async def _apply(self, event: bytes) -> None:
        sign, key = event[:1], event[1:].decode()
        if sign == b"-":
            self._index.remove(key)
        elif sign == b"*":
            if key != self._origin:
                self._index.clear()
        elif sign == b"+" and key not in self._index:
            data = await self._redis.hget(VECTORS, key)
            if data is not None:
                self._add(key, data)

    def _add(self, key: str, data: bytes) -> None:
        partition, sep, raw = data.partition(b"\n")
        if not sep or not raw or len(raw) % 4:
            return
        vector = np.frombuffer(raw, dtype=np.float32).copy()
        with contextlib.suppress(DimensionMismatch):  # never compared with ours
            self._index.add(key, partition.decode(), vector)
