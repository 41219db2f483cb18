"""Budgets held in Redis (``limits.backend: redis``): one atomic Lua script per request.

Admission checks every scope that applies and reserves the estimate in all of them,
or in none, in one ``EVALSHA``; Redis runs one script at a time, so replicas never
all pass the same last cent. Settlement replaces the reservation by the real spend.
A request that reserves nothing (an exact cache hit) is checked the same way and
leaves nothing behind: no reservation is written, and nothing is settled.
Per scope and month (the ``{llmgw}`` hash tag keeps them in one Redis Cluster slot):

    llmgw:{llmgw}:budget:<YYYY-MM>:<scope>              hash  spent, tokens, reserved,
                                                              rtokens, r:<request id>
    llmgw:{llmgw}:budget:<YYYY-MM>:<scope>:held         zset  request id -> hold end (ms)
    llmgw:{llmgw}:budget:<YYYY-MM>:<scope>:alert:<f>    string, SET NX: who fired it

Every key expires a day after its month ends (``scopes.expire_at``). A reservation is held at most
``HOLD`` seconds: the reservations of a replica that died mid-request free
themselves then. The month's counters of a scope that has none yet (a new month, a
flushed or replaced Redis) are seeded from the database by the caller: the script
answers which scopes it needs, and seeds only those still absent.

Outages are handled as the limits do (``limits/redis.py``): a call that cannot
reach Redis returns ``None``, the outage is logged once, and Redis is left alone
for a second before it is tried again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from llmgw.limits.shared_redis import ERRORS, PREFIX, SharedRedis
from llmgw.store.budgets import Ask

log = logging.getLogger(__name__)

HOLD = 3600.0  # seconds a reservation is held without a settlement

_RELEASE = """
local function release(key, held, member)
  local amount = redis.call('HGET', key, 'r:' .. member)
  if amount then
    local nano, tokens = string.match(amount, '^(%d+):(%d+)$')
    if nano ~= '0' then redis.call('HINCRBY', key, 'reserved', '-' .. nano) end
    if tokens ~= '0' then redis.call('HINCRBY', key, 'rtokens', '-' .. tokens) end
    redis.call('HDEL', key, 'r:' .. member)
  end
  redis.call('ZREM', held, member)
end
"""

# KEYS: 2 per scope (hash, held). ARGV: id, hold ms, expire at (unix s), then 6 per
# scope: limit nano-USD, limit tokens (-1: none), reserve nano-USD, reserve tokens,
# seed nano-USD, seed tokens (-1: not known). Amounts travel as strings: Lua would
# print a large number as 1e+15.
# Returns {0}: reserved; {i}: refused by scope i; {-1, i, ...}: seed these scopes first.
ADMIT = (
    _RELEASE
    + """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local id, hold, expire_at = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local scopes = #KEYS / 2
local missing = {-1}
for i = 1, scopes do
  local key, a = KEYS[2 * i - 1], 3 + (i - 1) * 6
  if redis.call('EXISTS', key) == 0 then
    if tonumber(ARGV[a + 5]) < 0 then
      table.insert(missing, i)
    else
      redis.call('HSET', key, 'spent', ARGV[a + 5], 'tokens', ARGV[a + 6],
                 'reserved', '0', 'rtokens', '0')
      redis.call('EXPIREAT', key, expire_at)
    end
  end
end
if #missing > 1 then return missing end
for i = 1, scopes do
  local key, held = KEYS[2 * i - 1], KEYS[2 * i]
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', held, '-inf', now, 'LIMIT', 0, 100)) do
    release(key, held, member)
  end
end
for i = 1, scopes do
  local a = 3 + (i - 1) * 6
  local v = redis.call('HMGET', KEYS[2 * i - 1], 'spent', 'reserved', 'tokens', 'rtokens')
  local usd, tokens = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  if usd >= 0 and (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0) >= usd then return {i} end
  if tokens >= 0 and (tonumber(v[3]) or 0) + (tonumber(v[4]) or 0) >= tokens then
    return {i}
  end
end
for i = 1, scopes do
  local key, held, a = KEYS[2 * i - 1], KEYS[2 * i], 3 + (i - 1) * 6
  if ARGV[a + 3] ~= '0' or ARGV[a + 4] ~= '0' then  -- nothing to hold for a free request
    redis.call('HINCRBY', key, 'reserved', ARGV[a + 3])
    redis.call('HINCRBY', key, 'rtokens', ARGV[a + 4])
    redis.call('HSET', key, 'r:' .. id, ARGV[a + 3] .. ':' .. ARGV[a + 4])
    redis.call('ZADD', held, now + hold, id)
    redis.call('EXPIREAT', held, expire_at)
  end
end
return {0}
"""
)

# KEYS: 2 per scope (hash, held). ARGV: id, cost nano-USD, tokens.
# Returns spent, tokens per scope after (-1, -1: the month's counters are gone, so
# nothing is added: the next admission seeds them from the database, this included).
SETTLE = (
    _RELEASE
    + """
local id, cost, used = ARGV[1], ARGV[2], ARGV[3]
local reply = {}
for i = 1, #KEYS / 2 do
  local key, held = KEYS[2 * i - 1], KEYS[2 * i]
  release(key, held, id)
  if redis.call('EXISTS', key) == 1 then
    table.insert(reply, redis.call('HINCRBY', key, 'spent', cost))
    table.insert(reply, redis.call('HINCRBY', key, 'tokens', used))
  else
    table.insert(reply, -1)
    table.insert(reply, -1)
  end
end
return reply
"""
)

Seeds = Mapping[str, tuple[int, int]]  # scope -> (spent nano-USD, tokens) this month


def spend_key(period: str, scope: str) -> str:
    return f"{PREFIX}budget:{period}:{scope}"


def alert_key(period: str, scope: str, level: str) -> str:
    return f"{spend_key(period, scope)}:alert:{level}"


class RedisBudgets(SharedRedis):
    """Budget spend shared by every replica through one Redis server."""

    what = "budgets"

    def __init__(self, url: str, hold: float = HOLD) -> None:
        super().__init__(url, log)
        self.hold = hold
        self._admit = self.client.register_script(ADMIT)
        self._settle = self.client.register_script(SETTLE)

    async def admit(
        self,
        period: str,
        expire_at: int,
        asks: Sequence[Ask],
        member: str,
        seeds: Seeds | None,
        policy: str,
    ) -> list[int] | None:
        """``[]``: reserved in every scope; ``[i]``: refused by ``asks[i]``; ``[-1, i,
        ...]``: ``asks[i]`` ... need seeding first; ``None``: Redis cannot be reached."""
        if self._resting():
            return None
        keys: list[str] = []
        args: list[int | str] = [member, int(self.hold * 1000), expire_at]
        for ask in asks:
            keys += [spend_key(period, ask.scope), spend_key(period, ask.scope) + ":held"]
            seed = None if seeds is None else seeds.get(ask.scope, (0, 0))
            args += [
                -1 if ask.usd_nano is None else ask.usd_nano,
                -1 if ask.tokens is None else ask.tokens,
                ask.reserve_nano,
                ask.reserve_tokens,
                *(seed if seed is not None else (-1, -1)),
            ]
        try:
            reply = await self._admit(keys=keys, args=[str(a) for a in args])
        except ERRORS as exc:
            self._failed(exc, policy)
            return None
        self._reached()
        first = int(reply[0])
        if first == 0:
            return []
        if first > 0:
            return [first - 1]
        return [-1, *(int(i) - 1 for i in reply[1:])]

    async def settle(
        self, period: str, scopes: Sequence[str], member: str, cost: int, tokens: int
    ) -> dict[str, tuple[int, int]] | None:
        """Release ``member``'s reservations and add what it spent; each scope's (spent,
        tokens) after (scopes whose counters are gone left out), or None."""
        if self._resting():
            return None
        keys: list[str] = []
        for scope in scopes:
            keys += [spend_key(period, scope), spend_key(period, scope) + ":held"]
        try:
            reply = await self._settle(keys=keys, args=[member, str(cost), str(tokens)])
        except ERRORS as exc:
            self._failed(exc, None)
            return None
        self._reached()
        after = {
            scope: (int(reply[2 * i]), int(reply[2 * i + 1])) for i, scope in enumerate(scopes)
        }
        return {scope: pair for scope, pair in after.items() if pair[0] >= 0}

    async def claim_alert(self, period: str, scope: str, level: str, expire_at: int) -> bool | None:
        """True for the one caller, of every replica, that records this alert first."""
        if self._resting():
            return None
        try:
            key = alert_key(period, scope, level)
            claimed = await self.client.set(key, "1", nx=True, exat=expire_at)
        except ERRORS as exc:
            self._failed(exc, None)
            return None
        self._reached()
        return bool(claimed)

    async def report(
        self, period: str, scopes: Sequence[str], levels: Sequence[str]
    ) -> tuple[dict[str, tuple[int, int]], dict[str, list[str]]] | None:
        """The (spent, tokens) of the scopes Redis holds and the alert levels fired."""
        if not scopes:
            return {}, {}
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for scope in scopes:
                    pipe.hmget(spend_key(period, scope), "spent", "tokens")
                for scope in scopes:
                    pipe.mget([alert_key(period, scope, level) for level in levels] or ["-"])
                replies = await pipe.execute()
        except ERRORS as exc:
            self._failed(exc, None)
            return None
        self._reached()
        spend = {
            scope: (int(pair[0]), int(pair[1] or 0))
            for scope, pair in zip(scopes, replies, strict=False)
            if pair[0] is not None
        }
        fired = {
            scope: [level for level, value in zip(levels, values, strict=False) if value]
            for scope, values in zip(scopes, replies[len(scopes) :], strict=True)
        }
        return spend, fired
