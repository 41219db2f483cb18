"""The redis limits backend: one atomic Lua script per request, every scope at once.

Checking in Python and then recording would let N replicas each admit the last free
request; here a single ``EVALSHA`` checks every scope that applies and then records
the request in all of them, or records nothing, and Redis runs one script at a time.
Time is Redis's own (``TIME``), so replicas with drifting clocks agree. The scripts are
Lua functions (``limits_admit``, ``limits_settle``): when budgets apply too,
``budgets/joint.py`` runs them in the budgets' script call, one round trip each way.

Per scope (all keys share the ``{llmgw}`` hash tag, so a Redis Cluster keeps them
in one slot):

    llmgw:{llmgw}:rpm:<scope>      sorted set  request id -> admitted at (ms)
    llmgw:{llmgw}:tpm:<scope>      sorted set  request id -> reserved at (ms)
    llmgw:{llmgw}:tpm:<scope>:n    hash        request id -> tokens
    llmgw:{llmgw}:tpm:<scope>:sum  string      sum of the hash
    llmgw:{llmgw}:inflight:<scope> sorted set  request id -> lease end (ms)
    llmgw:{llmgw}:usage            hash        group|name|field -> total (every replica)

A concurrency slot is a lease that this replica renews while the request runs, so
the slots of a replica that died free themselves within ``LEASE`` seconds.

When Redis cannot be reached the call returns ``None`` (``limits.on_redis_error``
then decides), the outage is logged once, and Redis is left alone for a second
before it is tried again, so requests do not each wait on a dead server. A call
whose reply was late may have run all the same: what an admission recorded is then
given back (its tokens and slot; the request stays in ``rpm``), and a settlement
finished, in the background by the request's id (``SharedRedis.undo``); both are
idempotent, so a script that did run is not counted twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from llmgw.limits.shared_redis import CLOCK, ERRORS, PREFIX, Lua, SharedRedis
from llmgw.limits.types import LEASE, WINDOW, Count, Scope, Verdict, most_constrained
from llmgw.observe.usage import Spend, usage_from_fields

log = logging.getLogger(__name__)


# KEYS: 5 per scope (rpm, tpm, tpm:n, tpm:sum, inflight).
# ARGV: id, tokens, window ms, lease ms, then 3 per scope: rpm, tpm, concurrency (0 = none).
# Returns {binding scope (0 = admitted), wait ms, reason, then 5 per scope:
#          requests, requests reset ms, tokens, tokens reset ms, in flight}.
ADMIT_FUNCTION = """
local function limits_admit(K, A, now)
  local id, tokens = A[1], tonumber(A[2])
  local window, lease = tonumber(A[3]), tonumber(A[4])
  local scopes = (#A - 4) / 3
  local horizon = now - window

  local function oldest(key)
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if #first == 0 then return 0 end
    return tonumber(first[2]) + window - now
  end

  local function expire_tokens(times, amounts, sum)
    while true do
      local old = redis.call('ZRANGEBYSCORE', times, '-inf', horizon, 'LIMIT', 0, 500)
      if #old == 0 then break end
      local freed = 0
      for _, n in ipairs(redis.call('HMGET', amounts, unpack(old))) do
        freed = freed + (tonumber(n) or 0)
      end
      redis.call('HDEL', amounts, unpack(old))
      redis.call('ZREM', times, unpack(old))
      redis.call('DECRBY', sum, freed)
    end
    if redis.call('ZCARD', times) == 0 then
      redis.call('DEL', amounts, sum)  -- nothing left in the window: start clean
      return 0
    end
    return tonumber(redis.call('GET', sum) or '0')
  end

  local function freed_by(times, amounts, excess)
    local entries = redis.call('ZRANGE', times, 0, -1, 'WITHSCORES')
    local freed, at = 0, now
    for i = 1, #entries, 2 do
      freed = freed + (tonumber(redis.call('HGET', amounts, entries[i])) or 0)
      at = tonumber(entries[i + 1])
      if freed >= excess then break end
    end
    return at
  end

  local binding, wait, reason = 0, 0, 0
  local limits, counts = {}, {}
  for i = 1, scopes do
    local k, a = (i - 1) * 5, 4 + (i - 1) * 3
    local rpm, tpm, conc = tonumber(A[a + 1]), tonumber(A[a + 2]), tonumber(A[a + 3])
    local requests, used, inflight = 0, 0, 0
    local need, why = -1, 0
    if rpm > 0 then
      redis.call('ZREMRANGEBYSCORE', K[k + 1], '-inf', horizon)
      requests = redis.call('ZCARD', K[k + 1])
      if requests >= rpm then
        local nth = redis.call('ZRANGE', K[k + 1], requests - rpm, requests - rpm, 'WITHSCORES')
        need, why = tonumber(nth[2]) + window - now, 1
      end
    end
    if tpm > 0 then
      used = expire_tokens(K[k + 2], K[k + 3], K[k + 4])
      if used > 0 and used + tokens > tpm then
        local after = freed_by(K[k + 2], K[k + 3], used + tokens - tpm) + window - now
        if after > need then need, why = after, 2 end
      end
    end
    if conc > 0 then
      redis.call('ZREMRANGEBYSCORE', K[k + 5], '-inf', now)
      inflight = redis.call('ZCARD', K[k + 5])
      if inflight >= conc and 1000 > need then need, why = 1000, 3 end
    end
    if why > 0 and (binding == 0 or need > wait) then
      binding, wait, reason = i, need, why
    end
    limits[i] = {rpm, tpm, conc}
    counts[i] = {requests, used, inflight}
  end

  if binding == 0 then
    for i = 1, scopes do
      local k = (i - 1) * 5
      local rpm, tpm, conc = limits[i][1], limits[i][2], limits[i][3]
      if rpm > 0 then
        redis.call('ZADD', K[k + 1], now, id)
        redis.call('PEXPIRE', K[k + 1], window)
        counts[i][1] = counts[i][1] + 1
      end
      if tpm > 0 then
        redis.call('ZADD', K[k + 2], now, id)
        redis.call('HSET', K[k + 3], id, tokens)
        redis.call('INCRBY', K[k + 4], tokens)
        for j = 2, 4 do redis.call('PEXPIRE', K[k + j], window * 2) end
        counts[i][2] = counts[i][2] + tokens
      end
      if conc > 0 then
        redis.call('ZADD', K[k + 5], now + lease, id)
        redis.call('PEXPIRE', K[k + 5], lease * 2)
        counts[i][3] = counts[i][3] + 1
      end
    end
  end

  local reply = {binding, wait, reason - 1}
  for i = 1, scopes do
    local k = (i - 1) * 5
    table.insert(reply, counts[i][1])
    table.insert(reply, limits[i][1] > 0 and oldest(K[k + 1]) or 0)
    table.insert(reply, counts[i][2])
    table.insert(reply, limits[i][2] > 0 and oldest(K[k + 2]) or 0)
    table.insert(reply, counts[i][3])
  end
  return reply
end
"""

# KEYS: 4 per scope (tpm, tpm:n, tpm:sum, inflight), then the usage hash.
# ARGV: id, tokens used, tokens reserved, window ms, scopes, one flag per scope
#       (1: tpm, 2: concurrency, 3: both), then usage field/increment pairs.
SETTLE_FUNCTION = """
local function limits_settle(K, A, now, seconds)
  local id, used, reserved = A[1], tonumber(A[2]), tonumber(A[3])
  local window, scopes = tonumber(A[4]), tonumber(A[5])
  for i = 1, scopes do
    local k, flags = (i - 1) * 4, tonumber(A[5 + i])
    if flags % 2 == 1 then
      local held = redis.call('HGET', K[k + 2], id)
      if held then
        redis.call('HSET', K[k + 2], id, used)
        redis.call('INCRBY', K[k + 3], used - tonumber(held))
      elseif used > reserved then
        redis.call('ZADD', K[k + 1], now, id .. '+')
        redis.call('HSET', K[k + 2], id .. '+', used - reserved)
        redis.call('INCRBY', K[k + 3], used - reserved)
      end
      for j = 1, 3 do redis.call('PEXPIRE', K[k + j], window * 2) end
    end
    if flags >= 2 then redis.call('ZREM', K[k + 4], id) end
  end
  local usage = K[scopes * 4 + 1]
  if #A > 5 + scopes then
    redis.call('HSETNX', usage, 'since', seconds)
    for j = 6 + scopes, #A, 2 do redis.call('HINCRBY', usage, A[j], A[j + 1]) end
  end
end
"""

ADMIT = Lua(CLOCK + ADMIT_FUNCTION + "return limits_admit(KEYS, ARGV, now)")
SETTLE = Lua(CLOCK + SETTLE_FUNCTION + "limits_settle(KEYS, ARGV, now, clock[1])\nreturn 1")

# KEYS: in-flight sorted sets; ARGV: lease ms, then the id held in each.
RENEW = Lua(
    CLOCK
    + """
local lease = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', now + lease, ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[i], lease * 2)
end
return #KEYS
"""
)


class RedisCounters(SharedRedis):
    """Limits and usage shared by every replica through one Redis server."""

    what = "limits"

    def __init__(self, url: str) -> None:
        super().__init__(url, log)
        self.leases: dict[str, tuple[str, ...]] = {}  # request id -> in-flight keys held

    async def admit(
        self, scopes: tuple[Scope, ...], member: str, tokens: int, policy: str
    ) -> Verdict | None:
        """Check and record in every scope at once; None when Redis cannot be reached."""
        if self.resting():
            return None
        keys, args = admit_parts(scopes, member, tokens)
        try:
            reply = await self.run(ADMIT, keys, args)
        except ERRORS as exc:
            self.failed(exc, policy)
            self.undo(exc, SETTLE, *settle_parts(scopes, member, tokens, 0, ()))
            return None
        self.reached()
        return self.verdict(scopes, keys, member, reply)

    def verdict(
        self, scopes: tuple[Scope, ...], keys: list[str], member: str, reply: Sequence[Any]
    ) -> Verdict:
        """What ``limits_admit`` answered (``reply``, for ``admit_parts``' ``keys``)."""
        held = tuple(keys[i * 5 + 4] for i, s in enumerate(scopes) if s.spec.concurrency)
        binding, wait_ms, reason = int(reply[0]), int(reply[1]), int(reply[2])
        if binding == 0 and held:
            self.leases[member] = held
        counts = [
            Count(
                requests=int(reply[3 + i * 5]),
                requests_reset=int(reply[4 + i * 5]) / 1000,
                tokens=int(reply[5 + i * 5]),
                tokens_reset=int(reply[6 + i * 5]) / 1000,
                inflight=int(reply[7 + i * 5]),
            )
            for i in range(len(scopes))
        ]
        return Verdict(
            most_constrained(scopes, counts), binding - 1, wait_ms / 1000, max(0, reason)
        )

    async def settle(
        self,
        scopes: tuple[Scope, ...],
        member: str,
        reserved: int,
        used: int,
        spends: tuple[Spend, ...],
    ) -> None:
        self.leases.pop(member, None)
        if self.resting():
            return
        keys, args = settle_parts(scopes, member, reserved, used, spends)
        try:
            await self.run(SETTLE, keys, args)
        except ERRORS as exc:
            self.failed(exc, None)
            self.undo(exc, SETTLE, *settle_once_parts(scopes, member, used))
        else:
            self.reached()

    async def renew(self) -> None:
        """Extend the leases of this replica's requests in flight."""
        if not self.leases or self.resting():
            return
        keys: list[str] = []
        args: list[int | str] = [int(LEASE * 1000)]
        for member, held in list(self.leases.items()):
            keys += held
            args += [member] * len(held)
        try:
            await self.run(RENEW, keys, args)
        except ERRORS as exc:
            self.failed(exc, None)

    async def usage(self) -> dict[str, object] | None:
        try:
            raw = await self.client.hgetall(PREFIX + "usage")
        except ERRORS as exc:
            self.failed(exc, None)
            return None
        fields = {_text(k): int(v) for k, v in raw.items()}
        since = fields.pop("since", None)
        return usage_from_fields(fields, None if since is None else float(since))


def admit_parts(
    scopes: tuple[Scope, ...], member: str, tokens: int
) -> tuple[list[str], list[int | str]]:
    """``limits_admit``'s keys and arguments."""
    keys: list[str] = []
    args: list[int | str] = [member, tokens, int(WINDOW * 1000), int(LEASE * 1000)]
    for scope in scopes:
        keys += _scope_keys(scope.id)
        spec = scope.spec
        args += [spec.rpm or 0, spec.tpm or 0, spec.concurrency or 0]
    return keys, args


def settle_parts(
    scopes: tuple[Scope, ...], member: str, reserved: int, used: int, spends: tuple[Spend, ...]
) -> tuple[list[str], list[int | str]]:
    """``limits_settle``'s keys and arguments."""
    keys: list[str] = []
    flags: list[int] = []
    for scope in scopes:
        keys += _scope_keys(scope.id)[1:]  # all but rpm: nothing to undo there
        flags.append((1 if scope.spec.tpm else 0) + (2 if scope.spec.concurrency else 0))
    keys.append(PREFIX + "usage")
    args: list[int | str] = [member, used, reserved, int(WINDOW * 1000), len(scopes), *flags]
    for spend in spends:  # the request's, then its hedged racers' that lost
        for name, n in spend.increments():
            args += [name, n]
    return keys, args


def settle_once_parts(
    scopes: tuple[Scope, ...], member: str, used: int
) -> tuple[list[str], list[int | str]]:
    """``limits_settle``'s keys and arguments that finish a settlement of ``used`` tokens
    that timed out, and do nothing if it ran: the tokens are set (not added), the slot
    removed, no extra entry made (the tokens reserved taken as ``used``) and no usage
    added (the shared totals then miss a settlement that never ran)."""
    return settle_parts(scopes, member, used, used, ())


def _scope_keys(scope_id: str) -> list[str]:
    return [
        f"{PREFIX}rpm:{scope_id}",
        f"{PREFIX}tpm:{scope_id}",
        f"{PREFIX}tpm:{scope_id}:n",
        f"{PREFIX}tpm:{scope_id}:sum",
        f"{PREFIX}inflight:{scope_id}",
    ]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
