"""A request's budgets and limits in Redis in one script call each way.

Admission: ``budgets_check``, then ``limits_admit`` (which records only if every limit
has room), then ``budgets_reserve`` only if the limits admitted: both or neither, in
one atomic script, so a request pays one round trip where it paid two (and, refused
by a limit, no longer reserves and then releases its budget estimate). Settlement:
``limits_settle`` and ``budgets_settle`` in one script.

A call whose reply is late (the command timeout) may have run all the same. The
gateway then goes on as if Redis could not be reached (``limits.on_redis_error``)
and sends, in the background, what undoes it by the names it made before sending
(``SharedRedis.undo``): an admission's ``SETTLE`` of nothing spent (its budget
estimate, tokens and slot given back: a no-op if it never ran), a settlement's
``SETTLE_ONCE`` (finished if it never ran, nothing if it did). The limits' own call
that follows a failed admission uses a name of its own (``gate._admit``), so the
undoing cannot touch it.

KEYS: the budgets' keys, then the limits'. ARGV: how many keys and arguments are the
budgets', the budgets' arguments, then the limits'. The parts are those of
``budgets/redis.py`` and ``limits/redis.py``; the answers read as theirs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmgw.budgets import redis as budgets
from llmgw.budgets.redis import RedisBudgets, read_admit, read_settle
from llmgw.limits import redis as limits
from llmgw.limits.redis import RedisCounters
from llmgw.limits.shared_redis import CLOCK, ERRORS, Lua
from llmgw.limits.types import Scope, Verdict
from llmgw.observe.usage import Spend

_SPLIT = """
local nk, na = tonumber(ARGV[1]), tonumber(ARGV[2])
local K1, A1, K2, A2 = {}, {}, {}, {}
for i = 1, nk do K1[i] = KEYS[i] end
for i = nk + 1, #KEYS do K2[i - nk] = KEYS[i] end
for i = 1, na do A1[i] = ARGV[i + 2] end
for i = na + 3, #ARGV do A2[i - na - 2] = ARGV[i] end
"""

# Returns the budgets' refusal ({i} or {-1, i, ...}: nothing recorded anywhere), or
# {0, then the limits' answer}: the budget estimate is reserved if the limits admitted.
ADMIT = Lua(
    budgets.RELEASE
    + budgets.CHECK_FUNCTIONS
    + limits.ADMIT_FUNCTION
    + CLOCK
    + _SPLIT
    + """
local refused = budgets_check(K1, A1, now)
if refused then return refused end
local reply = limits_admit(K2, A2, now)
if reply[1] == 0 then budgets_reserve(K1, A1, now) end
table.insert(reply, 1, 0)
return reply
"""
)

# K1, A1: the limits'; K2, A2: the budgets'. Returns the budgets' answer.
SETTLE = Lua(
    budgets.RELEASE
    + limits.SETTLE_FUNCTION
    + budgets.SETTLE_FUNCTION
    + CLOCK
    + _SPLIT
    + """
limits_settle(K1, A1, now, clock[1])
return budgets_settle(K2, A2)
"""
)

# ``SETTLE``'s parts as ``settle_once_parts`` and ``budgets_settle_once`` take them.
SETTLE_ONCE = Lua(
    budgets.RELEASE
    + limits.SETTLE_FUNCTION
    + budgets.SETTLE_ONCE_FUNCTION
    + CLOCK
    + _SPLIT
    + """
limits_settle(K1, A1, now, clock[1])
budgets_settle_once(K2, A2)
return 1
"""
)


def ready(spend: RedisBudgets, counters: RedisCounters) -> bool:
    """Whether both may be asked now (neither is resting after a failure)."""
    return not (spend.resting() or counters.resting())


async def admit(
    spend: RedisBudgets,
    counters: RedisCounters,
    budget_parts: tuple[list[str], list[str]],
    scopes: tuple[Scope, ...],
    member: str,
    tokens: int,
    policy: str,
) -> tuple[list[int], Verdict | None] | None:
    """The budgets' answer (as ``RedisBudgets.admit``'s) and, when they had room, the
    limits' verdict (as ``RedisCounters.admit``'s); None when Redis cannot be reached
    (noted by the budgets: their policy applies first, as when each made its call)."""
    keys, args = budget_parts
    limit_keys, limit_args = limits.admit_parts(scopes, member, tokens)
    try:
        reply = await spend.run(
            ADMIT,
            [*keys, *limit_keys],
            [len(keys), len(args), *args, *limit_args],
        )
    except ERRORS as exc:  # the limits then make their own call (and note their own failure)
        spend.failed(exc, policy)
        back_keys, back_args = limits.settle_parts(scopes, member, tokens, 0, ())
        given = budgets.give_back_args(args)
        spend.undo(
            exc,
            SETTLE,
            [*back_keys, *keys],
            [len(back_keys), len(back_args), *back_args, *given],
        )
        return None
    spend.reached()
    counters.reached()
    verdict = read_admit(reply)
    if verdict:
        return verdict, None
    return verdict, counters.verdict(scopes, limit_keys, member, reply[1:])


async def settle(
    spend: RedisBudgets,
    counters: RedisCounters,
    limit_parts: tuple[tuple[Scope, ...], str, int, int, tuple[Spend, ...]],
    period: str,
    budget_scopes: Sequence[str],
    hold_member: str,
    cost: int,
    used: int,
) -> dict[str, tuple[int, int]] | None:
    """``RedisCounters.settle`` and ``RedisBudgets.settle`` in one call; the budgets'
    (spent, tokens) after, or None when Redis cannot be reached."""
    scopes, member, reserved, limit_used, spends = limit_parts
    counters.leases.pop(member, None)
    limit_keys, limit_args = limits.settle_parts(scopes, member, reserved, limit_used, spends)
    keys, args = budgets.settle_parts(period, budget_scopes, hold_member, cost, used)
    try:
        reply: Any = await spend.run(
            SETTLE,
            [*limit_keys, *keys],
            [len(limit_keys), len(limit_args), *limit_args, *args],
        )
    except ERRORS as exc:
        spend.failed(exc, None)
        counters.failed(exc, None)
        once_keys, once_args = limits.settle_once_parts(scopes, member, limit_used)
        spend.undo(
            exc,
            SETTLE_ONCE,
            [*once_keys, *keys],
            [len(once_keys), len(once_args), *once_args, *args],
        )
        return None
    spend.reached()
    counters.reached()
    return read_settle(budget_scopes, reply)
