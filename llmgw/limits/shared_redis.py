"""One Redis server shared by every replica, as the limits and the budgets use it: the
client (short timeouts, one reconnect for a stale pooled connection, a call that timed
out undone rather than sent again: ``undo``), and what happens
while the server cannot be reached (logged once, then left alone for a second, so a
dead Redis costs each request nothing but the ``on_redis_error`` policy)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeout

from llmgw.limits.resp import Channel, lean_target
from llmgw.limits.types import Background

PREFIX = "llmgw:{llmgw}:"
CONNECT_TIMEOUT = 0.5
COMMAND_TIMEOUT = 1.0
RETRY_AFTER_FAILURE = 1.0  # seconds Redis is not asked again after a failure
ERRORS = (RedisError, OSError, asyncio.TimeoutError)
# A call that failed so may still have run in Redis: its reply was late (the
# connection is then ended, but Redis ran the script all the same if it got it).
TIMEOUTS = (RedisTimeout, asyncio.TimeoutError)
UNDO_WITHIN = 5.0  # seconds shutdown waits for the undoing sent in the background

# The scripts' clock: Redis's own, so replicas with drifting clocks agree (ms).
CLOCK = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""


class Lua:
    """A Lua script and its SHA1, which ``SharedRedis.run`` calls it by."""

    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()


class SharedRedis:
    """A Redis client and its reachability, named ``what`` in the log lines."""

    what = "redis"

    def __init__(self, url: str, log: logging.Logger) -> None:
        self.url = url
        self.log = log
        self.client = Redis.from_url(
            url,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=COMMAND_TIMEOUT,
            # One reconnect for a stale pooled connection; never a resend after a timeout:
            # the command may have run (a script's reservation taken twice), see ``undo``.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        target = lean_target(url)
        # The scripts' connection (limits/resp.py); other URLs' scripts use redis-py.
        self.channel = None if target is None else Channel(target, CONNECT_TIMEOUT, COMMAND_TIMEOUT)
        self.down_since: float | None = None
        self._quiet_until = 0.0
        self._undoing = Background()

    async def close(self) -> None:
        await self._undoing.drain(UNDO_WITHIN)
        if self.channel is not None:
            self.channel.close()
        await self.client.aclose()

    async def run(self, script: Lua, keys: Sequence[str], args: Sequence[int | str]) -> Any:
        """``EVALSHA`` by the script's SHA1; a server that does not know the script
        yet (restarted, ``SCRIPT FLUSH``) is sent it once, then asked again."""
        channel = self.channel
        if channel is None:
            try:
                return await self.client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                await self.client.script_load(script.text)
                return await self.client.evalsha(script.sha, len(keys), *keys, *args)
        try:
            return await channel.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            await channel.call("SCRIPT", "LOAD", script.text)
            return await channel.call("EVALSHA", script.sha, len(keys), *keys, *args)

    def undo(
        self, exc: BaseException, script: Lua, keys: Sequence[str], args: Sequence[int | str]
    ) -> None:
        """After a call that failed with ``exc``: if it may have run all the same (a
        timeout), send ``script``, an idempotent undoing of what it did (a no-op if it
        never ran), in the background: never waited for by the request, not held back
        while Redis rests after the failure, tried again once a second later, then left
        to the reservations' own expiry (logged)."""
        if isinstance(exc, TIMEOUTS):
            self._undoing.spawn(self._undo(script, keys, args))

    async def _undo(self, script: Lua, keys: Sequence[str], args: Sequence[int | str]) -> None:
        for attempt in range(2):
            if attempt:
                await asyncio.sleep(RETRY_AFTER_FAILURE)
            try:
                await self.run(script, keys, args)
                return
            except ERRORS as exc:
                failure = exc
        self.log.warning(
            "%s: cannot undo a call that timed out (%s: %s); what it reserved is held "
            "until it expires",
            self.what,
            type(failure).__name__,
            failure,
        )

    def resting(self) -> bool:
        return self.down_since is not None and time.monotonic() < self._quiet_until

    def failed(self, exc: BaseException, policy: str | None) -> None:
        self._quiet_until = time.monotonic() + RETRY_AFTER_FAILURE
        if self.down_since is None:
            self.down_since = time.monotonic()
            then = f"limits.on_redis_error: {policy}" if policy else "limits.on_redis_error"
            self.log.error(
                "%s: Redis at %s cannot be reached (%s: %s); %s applies until it is back",
                self.what,
                redact(self.url),
                type(exc).__name__,
                exc,
                then,
            )

    def reached(self) -> None:
        if self.down_since is not None:
            self.log.warning(
                "%s: Redis at %s is reachable again after %.1fs",
                self.what,
                redact(self.url),
                time.monotonic() - self.down_since,
            )
            self.down_since = None


def redact(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))
