"""A request's admission and settlement: its budgets, then its limits (SPEC §5, §11).

The budgets are checked first: one spent refuses the request (``budget_exceeded``)
before any limit counts it; a limit that refuses it then gives back what the
budgets reserved. With ``limits.backend: redis`` both are asked in one script call
(``budgets/joint.py``) when both apply, and their settlements are sent in one too:
the same answers, one Redis round trip each way instead of two.
"""

from __future__ import annotations

from collections.abc import Iterable

from llmgw.budgets.front import Budgets
from llmgw.budgets.hold import Hold
from llmgw.budgets.scopes import expire_at
from llmgw.config import GatewayConfig
from llmgw.config.store import BudgetsConfig
from llmgw.core import Call, Principal, RequestContext
from llmgw.errors import GatewayError
from llmgw.limits.front import Admission, Limiter
from llmgw.limits.types import Target, Verdict
from llmgw.observe.tracing import note
from llmgw.observe.usage import PriceBook, Spend


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
) -> tuple[Hold | None, Admission]:
    """Reserve in the budgets and record in the limits, or raise 429 having done
    neither; ``free``: an exact cache hit (checked, nothing reserved: ``Budgets.prepare``)."""
    limits = config.limits
    policy = limits.on_redis_error
    targets = tuple(targets)
    pending = budgets.prepare(config, principal, call, targets, ctx.budget_key, prices, free)
    admission = limiter.prepare(limits, principal, call, targets, ctx)
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
    hedged racers that lost spent, paid for all the same)."""
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
    await limiter.settle(admission, spend, losers)
    await budgets.settle(hold, spend, config.alerts, config.webhook, losers)
