"""The redis cache store, through aiocache's Redis backend: one cache for every replica.

Entries are stored with their TTL as Redis expiry; Redis's own memory policy bounds
the size. A Redis that cannot be reached is a cache miss, never a failed request:
it is logged once per outage and left alone for a second after each failure.
Writes use aiocache's ``add`` (SET NX EX): its ``set`` calls redis-py's deprecated
SETEX, and the first replica to store an answer may as well keep it.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import unquote, urlsplit

from aiocache import RedisCache
from aiocache.serializers import BaseSerializer
from redis.exceptions import RedisError

from llmgw.cache.entry import Entry, Stats, decode_entry, encode_entry

log = logging.getLogger(__name__)

PREFIX = "llmgw:cache"
_FAILURES = (RedisError, OSError, TimeoutError)
RETRY_AFTER_OUTAGE = 1.0  # seconds


class _Bytes(BaseSerializer):  # type: ignore[misc]  # aiocache is untyped
    """Values are our own byte encoding: stored and read back unchanged."""

    DEFAULT_ENCODING = None

    def dumps(self, value: Any) -> Any:
        return value

    def loads(self, value: Any) -> Any:
        return value


class RedisStore:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError("the redis cache needs a redis:// or rediss:// URL")
        db = parts.path.lstrip("/") or "0"
        self._cache = RedisCache(
            serializer=_Bytes(),
            endpoint=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            db=int(db) if db.isdigit() else 0,
            password=unquote(parts.password) if parts.password else None,
            ssl=parts.scheme == "rediss",
            create_connection_timeout=1,
            timeout=1,
        )
        self.stats = Stats()
        self._down = False
        self._retry_at = 0.0

    async def get(self, key: str) -> Entry | None:
        if self._resting():
            return None
        try:
            data = await self._cache.get(key)
        except _FAILURES as exc:  # any Redis failure is a miss
            self._outage(exc)
            return None
        self._up()
        return decode_entry(data) if isinstance(data, bytes) else None

    async def put(self, key: str, entry: Entry, ttl: float) -> None:
        """SET NX with expiry: the first replica to store an answer keeps it."""
        if self._resting():
            return
        try:
            await self._cache.add(key, encode_entry(entry), ttl=max(1, round(ttl)))
        except ValueError:
            pass  # another replica stored this answer first
        except _FAILURES as exc:
            self._outage(exc)
            return
        self._up()

    async def clear(self) -> None:
        try:
            await self._cache.clear(namespace=PREFIX)
        except _FAILURES as exc:
            self._outage(exc)

    async def sizes(self) -> tuple[int, int]:
        """Entries and bytes under our prefix (a SCAN: for the stats endpoint only)."""
        client = self._cache.client
        entries = size = 0
        try:
            async for key in client.scan_iter(match=f"{PREFIX}:*", count=500):
                entries += 1
                size += int(await client.strlen(key))
        except _FAILURES as exc:
            self._outage(exc)
        return entries, size

    async def close(self) -> None:
        await self._cache.client.aclose()

    def _resting(self) -> bool:
        """After a failure, leave Redis alone for a second: a dead server must not
        add a timeout to every request."""
        return self._down and time.monotonic() < self._retry_at

    def _outage(self, exc: Exception) -> None:
        self._retry_at = time.monotonic() + RETRY_AFTER_OUTAGE
        if not self._down:
            self._down = True
            log.error("redis cache unreachable, serving without it: %s", type(exc).__name__)

    def _up(self) -> None:
        if self._down:
            self._down = False
            log.warning("redis cache reachable again")
