"""A request's admission and settlement: its budgets, then its limits (SPEC §5, §11).

The budgets are checked first: one spent refuses the request (``budget_exceeded``)
before any limit counts it; a limit that refuses it then gives back what the
budgets reserved. With ``limits.backend: redis`` both are asked in one script call
(``budgets/joint.py``) when both apply, and their settlements are sent in one too:
the same answers, one Redis round trip each way instead of two.

A reservation made is given back or settled exactly once, wherever the handler's
cancellation (its client gone: ``handler_cancellation``) lands. With Redis, an
admission runs to its end in a task of its own: a script whose reply was awaited when
the client left may have reserved, so what the admission then holds is given back
(``Budgets.give_back``, ``Limiter.give_back``). In memory nothing is reserved across
an await (``Budgets.place``), so no task is needed. Settling the limits and then the
budgets, a cancellation in the first never skips the second.

A script call whose reply is late (Redis's command timeout) may have run all the
same: ``limits.on_redis_error`` applies as for an unreachable Redis, and what the call
may have reserved is given back in the background by the names made before sending
(``budgets/joint.py``); the limits' own call after a failed joint one asks under a
name of its own, so that giving back cannot undo it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from llmgw.budgets.front import Budgets
from llmgw.budgets.hold import Hold, Pending
from llmgw.budgets.scopes import expire_at
from llmgw.config import GatewayConfig
from llmgw.config.schema import LimitsConfig
from llmgw.config.store import BudgetsConfig
from llmgw.core import Call, Principal, RequestContext
from llmgw.errors import GatewayError
from llmgw.limits.front import Admission, Limiter
from llmgw.limits.types import Target, Verdict
from llmgw.observe.tracing import note
from llmgw.observe.usage import PriceBook, Spend

Admitted = tuple[Hold | None, Admission]


async def admit(
    budgets: Budgets,
    limiter: Limiter,
    config: GatewayConfig,
    principal: Principal,
    call: Call,
    targets: Iterable[Target],
    ctx: RequestContext,
    prices: PriceBook,
    free: bool = False,
) -> Admitted:
    """Reserve in the budgets and record in the limits, or raise 429 having done
    neither; ``free``: an exact cache hit (checked, nothing reserved: ``Budgets.prepare``).
    Cancelled, it leaves nothing reserved (given back once the admission has ended)."""
    limits = config.limits
    targets = tuple(targets)
    pending = budgets.prepare(config, principal, call, targets, ctx.budget_key, prices, free)
    admission = limiter.prepare(limits, principal, call, targets, ctx)
    work = _admit(budgets, limiter, limits, pending, admission, ctx)
    asks_redis = admission.shared is not None and bool(admission.scopes)
    if not asks_redis and (pending is None or pending.shared is None):
        return await work  # in memory: no reservation is held across an await
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:  # the client left while Redis was asked
        budgets.hand_off(_give_back(budgets, limiter, task))
        raise


async def _give_back(budgets: Budgets, limiter: Limiter, task: asyncio.Task[Admitted]) -> None:
    """What the admission of a cancelled handler held, once it has ended, given back."""
    try:
        hold, admission = await task
    except GatewayError:
        return  # refused: it gave back its budgets, and no limit recorded it
    budgets.give_back(hold)
    limiter.give_back(admission)


async def _admit(
    budgets: Budgets,
    limiter: Limiter,
    limits: LimitsConfig,
    pending: Pending | None,
    admission: Admission,
    ctx: RequestContext,
) -> Admitted:
    policy = limits.on_redis_error
    counters = admission.shared if admission.scopes else None
    verdict: Verdict | None = None
    hold: Hold | None = None
    if pending is None:
        pass
    elif (
        counters is not None
        and pending.shared is not None
        and not (pending.shared.resting() or counters.resting())
    ):
        from llmgw.budgets import joint  # (imports Redis's client: only with Redis)

        spend = pending.shared
        parts = spend.admit_parts(
            pending.period, expire_at(pending.period), pending.asks, pending.member, None
        )
        answer = await joint.admit(
            spend, counters, parts, admission.scopes, admission.member, admission.reserved, policy
        )
        if answer is not None:
            verdict = answer[1]
        else:  # the limits ask on their own next, by a name the failed call's undoing lacks
            admission.member += "~"
        if verdict is None or verdict.binding < 0:  # else refused by a limit: nothing reserved
            hold = await budgets.place(pending, policy, None if answer is None else answer[0])
    else:
        hold = await budgets.place(pending, policy)
    try:
        if counters is not None and verdict is None:  # not asked yet (or Redis is down)
            scopes, member = admission.scopes, admission.member
            verdict = await counters.admit(scopes, member, admission.reserved, policy)
        limiter.decide(limits, admission, verdict, ctx)
    except BaseException as refused:
        await budgets.release(hold)
        if isinstance(refused, GatewayError):
            note(ctx, "llmgw.limits", decision="refused", code=refused.code)
        raise
    return hold, admission


async def settle(
    budgets: Budgets,
    limiter: Limiter,
    config: BudgetsConfig,
    hold: Hold | None,
    admission: Admission,
    spend: Spend,
    losers: tuple[Spend, ...] = (),
) -> None:
    """The request is over: settle its limits, then its budgets (``losers``: what its
    hedged racers that lost spent, paid for all the same, and the calls made for it:
    the semantic cache's embedding and that call's racers)."""
    counters = admission.shared
    if (
        counters is not None
        and hold is not None
        and hold.shared is not None
        and not (hold.shared.resting() or counters.resting())
        and budgets.owes_redis(hold, spend, losers)
    ):
        parts = limiter.settle_here(admission, spend, losers)
        assert parts is not None  # admission.shared is set
        joint = (counters, parts)
        await budgets.settle(hold, spend, config.alerts, config.webhook, losers, joint)
        return
    try:
        await limiter.settle(admission, spend, losers)
    finally:  # cancelled while the limits' settlement was awaited: the budgets' all the same
        await budgets.settle(hold, spend, config.alerts, config.webhook, losers)
