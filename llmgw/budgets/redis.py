"""Budgets held in Redis (``limits.backend: redis``): one atomic Lua script per request.

Admission checks every scope that applies and reserves the estimate in all of them,
or in none, in one ``EVALSHA`` (the limits' too, when limits apply: ``budgets/joint.py``);
Redis runs one script at a time, so replicas never all pass the same last cent.
Settlement replaces the reservation by the real spend.
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
for a second before it is tried again. A call whose reply was late may have run all
the same: an admission is then given back, and a settlement finished if it had not
run (``SETTLE_ONCE``), in the background by the reservation's name, which the
gateway made before sending (``SharedRedis.undo``); neither can count twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from llmgw.limits.shared_redis import CLOCK, ERRORS, PREFIX, Lua, SharedRedis
from llmgw.store.budgets import Ask

log = logging.getLogger(__name__)

HOLD = 3600.0  # seconds a reservation is held without a settlement

RELEASE = """
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

# K: 2 per scope (hash, held). A: id, hold ms, expire at (unix s), then 6 per scope:
# limit nano-USD, limit tokens (-1: none), reserve nano-USD, reserve tokens, seed
# nano-USD, seed tokens (-1: not known). Amounts travel as strings: Lua would print a
# large number as 1e+15. ``budgets_check`` answers nil: every scope has room; {i}:
# refused by scope i; {-1, i, ...}: seed these scopes first. ``budgets_reserve`` then
# holds the request's estimate in every scope.
CHECK_FUNCTIONS = """
local function budgets_check(K, A, now)
  local expire_at = A[3]
  local scopes = #K / 2
  local missing = {-1}
  for i = 1, scopes do
    local key, a = K[2 * i - 1], 3 + (i - 1) * 6
    if redis.call('EXISTS', key) == 0 then
      if tonumber(A[a + 5]) < 0 then
        table.insert(missing, i)
      else
        redis.call('HSET', key, 'spent', A[a + 5], 'tokens', A[a + 6],
                   'reserved', '0', 'rtokens', '0')
        redis.call('EXPIREAT', key, expire_at)
      end
    end
  end
  if #missing > 1 then return missing end
  for i = 1, scopes do
    local key, held = K[2 * i - 1], K[2 * i]
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', held, '-inf', now, 'LIMIT', 0, 100)) do
      release(key, held, member)
    end
  end
  for i = 1, scopes do
    local a = 3 + (i - 1) * 6
    local v = redis.call('HMGET', K[2 * i - 1], 'spent', 'reserved', 'tokens', 'rtokens')
    local usd, tokens = tonumber(A[a + 1]), tonumber(A[a + 2])
    if usd >= 0 and (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0) >= usd then return {i} end
    if tokens >= 0 and (tonumber(v[3]) or 0) + (tonumber(v[4]) or 0) >= tokens then
      return {i}
    end
  end
  return nil
end

local function budgets_reserve(K, A, now)
  local id, hold, expire_at = A[1], tonumber(A[2]), A[3]
  for i = 1, #K / 2 do
    local key, held, a = K[2 * i - 1], K[2 * i], 3 + (i - 1) * 6
    if A[a + 3] ~= '0' or A[a + 4] ~= '0' then  -- nothing to hold for a free request
      redis.call('HINCRBY', key, 'reserved', A[a + 3])
      redis.call('HINCRBY', key, 'rtokens', A[a + 4])
      redis.call('HSET', key, 'r:' .. id, A[a + 3] .. ':' .. A[a + 4])
      redis.call('ZADD', held, now + hold, id)
      redis.call('EXPIREAT', held, expire_at)
    end
  end
end
"""

# K: 2 per scope (hash, held). A: id, cost nano-USD, tokens.
# Answers spent, tokens per scope after (-1, -1: the month's counters are gone, so
# nothing is added: the next admission seeds them from the database, this included).
SETTLE_FUNCTION = """
local function budgets_settle(K, A)
  local id, cost, used = A[1], A[2], A[3]
  local reply = {}
  for i = 1, #K / 2 do
    local key, held = K[2 * i - 1], K[2 * i]
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
end
"""

# After a settlement that timed out: what it would have done if it never ran, nothing
# if it did (K, A: ``budgets_settle``'s). A scope still holding the request's
# reservation was not settled: released, and the spend added; one that no longer
# does was (or its hold expired: then the spend is not added, and the database
# still has it). Sent again, it does nothing more.
SETTLE_ONCE_FUNCTION = """
local function budgets_settle_once(K, A)
  local id, cost, used = A[1], A[2], A[3]
  for i = 1, #K / 2 do
    local key, held = K[2 * i - 1], K[2 * i]
    if redis.call('HEXISTS', key, 'r:' .. id) == 1 then
      release(key, held, id)
      redis.call('HINCRBY', key, 'spent', cost)
      redis.call('HINCRBY', key, 'tokens', used)
    end
  end
end
"""

# Returns {0}: reserved; {i}: refused by scope i; {-1, i, ...}: seed these scopes first.
ADMIT = Lua(
    RELEASE
    + CHECK_FUNCTIONS
    + CLOCK
    + """
local refused = budgets_check(KEYS, ARGV, now)
if refused then return refused end
budgets_reserve(KEYS, ARGV, now)
return {0}
"""
)
SETTLE = Lua(RELEASE + SETTLE_FUNCTION + "return budgets_settle(KEYS, ARGV)")
SETTLE_ONCE = Lua(RELEASE + SETTLE_ONCE_FUNCTION + "budgets_settle_once(KEYS, ARGV)\nreturn 1")

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
        if self.resting():
            return None
        keys, args = self.admit_parts(period, expire_at, asks, member, seeds)
        try:
            reply = await self.run(ADMIT, keys, args)
        except ERRORS as exc:
            self.failed(exc, policy)
            self.undo(exc, SETTLE, keys, give_back_args(args))  # (if it may have run)
            return None
        self.reached()
        return read_admit(reply)

    def admit_parts(
        self, period: str, expire_at: int, asks: Sequence[Ask], member: str, seeds: Seeds | None
    ) -> tuple[list[str], list[str]]:
        """``budgets_check``'s and ``budgets_reserve``'s keys and arguments."""
        keys: list[str] = []
        args: list[str] = [member, str(int(self.hold * 1000)), str(expire_at)]
        for ask in asks:
            key = spend_key(period, ask.scope)
            keys += [key, key + ":held"]
            seed = None if seeds is None else seeds.get(ask.scope, (0, 0))
            usd, most = ask.usd_nano, ask.tokens
            args += [
                "-1" if usd is None else str(usd),
                "-1" if most is None else str(most),
                str(ask.reserve_nano),
                str(ask.reserve_tokens),
                *(("-1", "-1") if seed is None else (str(seed[0]), str(seed[1]))),
            ]
        return keys, args

    async def settle(
        self, period: str, scopes: Sequence[str], member: str, cost: int, tokens: int
    ) -> dict[str, tuple[int, int]] | None:
        """Release ``member``'s reservations and add what it spent; each scope's (spent,
        tokens) after (scopes whose counters are gone left out), or None."""
        if self.resting():
            return None
        keys, args = settle_parts(period, scopes, member, cost, tokens)
        try:
            reply = await self.run(SETTLE, keys, args)
        except ERRORS as exc:
            self.failed(exc, None)
            if member:  # (if it may have run; "": nothing was reserved to find it by)
                self.undo(exc, SETTLE_ONCE, keys, args)
            return None
        self.reached()
        return read_settle(scopes, reply)

    async def claim_alert(self, period: str, scope: str, level: str, expire_at: int) -> bool | None:
        """True for the one caller, of every replica, that records this alert first."""
        if self.resting():
            return None
        try:
            key = alert_key(period, scope, level)
            claimed = await self.client.set(key, "1", nx=True, exat=expire_at)
        except ERRORS as exc:
            self.failed(exc, None)
            return None
        self.reached()
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
            self.failed(exc, None)
            return None
        self.reached()
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


def read_admit(reply: Sequence[Any]) -> list[int]:
    """``[]``: reserved (or, jointly with the limits, room) in every scope; ``[i]``:
    refused by ``asks[i]``; ``[-1, i, ...]``: ``asks[i]`` ... need seeding first."""
    first = int(reply[0])
    if first == 0:
        return []
    if first > 0:
        return [first - 1]
    return [-1, *(int(i) - 1 for i in reply[1:])]


def give_back_args(admit_args: Sequence[str]) -> list[str]:
    """``budgets_settle``'s arguments that give back what ``budgets_reserve`` held
    with ``admit_args`` (``admit_parts``'; the keys are the same): nothing spent.
    Idempotent, and a no-op where nothing was reserved."""
    return [admit_args[0], "0", "0"]


def settle_parts(
    period: str, scopes: Sequence[str], member: str, cost: int, tokens: int
) -> tuple[list[str], list[str]]:
    """``budgets_settle``'s keys and arguments."""
    keys: list[str] = []
    for scope in scopes:
        key = spend_key(period, scope)
        keys += [key, key + ":held"]
    return keys, [member, str(cost), str(tokens)]


def read_settle(scopes: Sequence[str], reply: Sequence[Any]) -> dict[str, tuple[int, int]]:
    """Each scope's (spent, tokens) after, the scopes whose counters are gone left out."""
    after = {scope: (int(reply[2 * i]), int(reply[2 * i + 1])) for i, scope in enumerate(scopes)}
    return {scope: pair for scope, pair in after.items() if pair[0] >= 0}
