"""Hedged attempts (SPEC §10, ``routing.hedge``): when the first target has sent no
first byte after ``after``, the next target starts too (up to ``max_extra`` more).

Each racer runs the ordinary attempt on a copy of the request's context. The first to
commit — a valid first event of a stream, or a whole JSON answer — claims the race
(``RequestContext.claim``, called by the relay before anything is written or recorded):
the others are cancelled at once, which closes their upstream connections. Nothing is
written to the client before a claim, so a request that wrote a byte is never hedged.
Racers that lost are kept on ``ctx.hedge_losers``; those that had begun answering
(``charged``) are billed by their provider, so their usage is counted — in usage,
limits, budgets and the ledger — though not as a request (the client made one):
``count_losers``, for a client's request and for a call made on its behalf (the
semantic cache's embedding) alike.
Each racer is its own attempt (numbered on its copy); a racer cancelled because another
won sees the cancellation carry ``LOST`` (``lost(error)``), so its trace span can say so.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

from llmgw.core import Call, RequestContext

if TYPE_CHECKING:
    from llmgw.observe.usage import PriceBook, Spend, UsageBook

R = TypeVar("R")
LOST = "llmgw: another hedged attempt answered first"
Racer = Callable[[RequestContext], Awaitable[R]]
# What the winner's relay wrote on its copy, handed back to the request's context.
_ADOPTED = (
    "provider",
    "upstream_model",
    "dropped",
    "first_byte",
    "prompt_tokens",
    "completion_tokens",
    "streamed_events",
    "error",
    "delivered",
)


def charged(ctx: RequestContext) -> tuple[RequestContext, ...]:
    """The racers of ``ctx`` that lost after their provider had begun answering (its
    status and headers came: an upstream model on their copy); their tokens are spent."""
    return tuple(loser for loser in ctx.hedge_losers if loser.upstream_model is not None)


def count_losers(
    usage: UsageBook, ctx: RequestContext, call: Call, prices: PriceBook
) -> tuple[Spend, ...]:
    """The spend of ``ctx``'s charged racers, each recorded in ``usage`` (its tokens
    and cost filled in on its context, for its ledger row; no request counted): what
    the limits and the budgets then settle with the request's own spend."""
    if not ctx.hedge_losers:  # most calls raced nobody: no generator, no tuple
        return ()
    return tuple(usage.record(loser, call, None, prices, request=False) for loser in charged(ctx))


def lost(error: BaseException) -> bool:
    """Whether ``error`` is the cancellation of a racer another racer beat."""
    return isinstance(error, asyncio.CancelledError) and error.args[:1] == (LOST,)


class Lost(Exception):
    """Every racer failed: ``failures`` are their exceptions, in start order."""

    def __init__(self, failures: list[tuple[int, BaseException]]) -> None:
        super().__init__("every hedged attempt failed")
        self.failures = failures


async def race(ctx: RequestContext, racers: Sequence[Racer[R]], after: float) -> tuple[int, R]:
    """(index of the winner, its result); ``Lost`` when every started racer failed."""
    tasks: list[asyncio.Task[R]] = []
    copies: list[RequestContext] = []
    claimed: list[int] = []

    def claimer(index: int) -> Callable[[], None]:
        def claim() -> None:
            if claimed:  # cannot happen: a claim cancels the others at once
                raise asyncio.CancelledError
            claimed.append(index)
            _adopt(ctx, copies[index], ("provider", "upstream_model", "dropped"))
            for other, task in enumerate(tasks):
                if other != index:
                    task.cancel(LOST)

        return claim

    def start(index: int) -> None:
        copy = replace(ctx, claim=None, hedge_losers=(), attempts=ctx.attempts + index)
        copy.claim = claimer(index)
        copies.append(copy)
        tasks.append(asyncio.ensure_future(racers[index](copy)))

    start(0)
    failures: list[tuple[int, BaseException]] = []
    try:
        while True:
            running = [t for t in tasks if not t.done()]
            more = not claimed and len(tasks) < len(racers)
            if not running:
                raise Lost(failures)
            done, _ = await asyncio.wait(
                running, timeout=after if more else None, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                start(len(tasks))  # the hedge: nobody answered in time
                continue
            for task in done:
                index = tasks.index(task)
                if task.cancelled():
                    continue
                error = task.exception()
                if error is None or (claimed and claimed[0] == index):
                    return index, _finish(ctx, copies, index, task)
                failures.append((index, error))
    finally:
        for index, task in enumerate(tasks):
            task.cancel(LOST if claimed and claimed[0] != index else None)
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        winner = claimed[0] if claimed else None
        if winner is not None:
            _adopt(ctx, copies[winner], _ADOPTED)
        ctx.attempts += len(tasks) - 1
        ctx.upstream_wait = max(c.upstream_wait for c in copies)
        ctx.hedge_losers = tuple(c for i, c in enumerate(copies) if i != winner)


def _finish(
    ctx: RequestContext, copies: list[RequestContext], index: int, task: asyncio.Task[R]
) -> R:
    _adopt(ctx, copies[index], _ADOPTED)
    return task.result()


def _adopt(ctx: RequestContext, copy: RequestContext, names: Sequence[str]) -> None:
    for name in names:
        setattr(ctx, name, getattr(copy, name))
