"""Monthly budgets per key, per ``x-budget-key`` and global, with alerts (SPEC §11).

A request is checked against every budget that applies to it: its key's
(``auth.keys[].budget`` or a managed key's), ``budgets.per_budget_key`` for the
``x-budget-key`` it sent, and ``budgets.global``. Like ``tpm``, admission reserves
an estimate — the prompt's tokens plus ``max_tokens`` (or as many again as the
prompt when unset), priced at the dearest target — and the real usage replaces it
when the request ends. A scope whose spent plus reserved amount has reached its
limit refuses with ``429 insufficient_quota / budget_exceeded`` and
``x-should-retry: false``; so the request that crosses a limit is served and the
next is refused, and replicas overshoot by at most the requests in flight whose
estimate fell short. An exact cache hit (known to cost nothing) is checked the
same way but reserves nothing. Periods are calendar months, UTC.

Where the budgets are held across replicas follows the limits: with
``limits.backend: redis`` in Redis (``budgets/redis.py``: one atomic script per
request, month-scoped keys seeded from the database when absent; exact across
replicas), else in each process's memory over the database (``budgets/local.py``:
no database round trip on a request's path; replicas sharing a PostgreSQL see each
other's spend within about 1.25 s). The database records every scope's spend either
way, written in batches off the request path (``store/budget_writer.py``). While Redis
cannot be reached, ``limits.on_redis_error`` decides: ``local`` holds the budgets in
this process's memory over the database, ``allow`` admits unchecked, ``deny`` answers
``429`` (``Retry-After: 1``). A database that cannot be read admits unchecked, loudly:
serving goes on.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError

from llmgw.budgets.alerts import Alerts
from llmgw.budgets.hold import UNASKED, Applies, Hold, Pending, Unasked, quiet, reserves, total
from llmgw.budgets.local import LocalBudgets
from llmgw.budgets.scopes import (
    describe,
    estimate,
    expire_at,
    limits_of,
    period_end,
    period_of,
    quiet_below,
    scopes_for,
)
from llmgw.config import GatewayConfig
from llmgw.config.schema import LimitsConfig
from llmgw.core import Call, Principal
from llmgw.errors import BudgetExceeded, RateLimited
from llmgw.limits.types import Background, Target
from llmgw.observe.metrics import Metrics
from llmgw.observe.usage import PriceBook, Spend
from llmgw.store import budgets as queries
from llmgw.store.engine import Database

if TYPE_CHECKING:
    from llmgw.budgets.redis import RedisBudgets
    from llmgw.limits.front import SharedSettle
    from llmgw.limits.redis import RedisCounters

    JointLimits = tuple[RedisCounters, SharedSettle]  # the limits' part of a joint settle

log = logging.getLogger("llmgw.budgets")
DB_ERRORS = (SQLAlchemyError, OSError)


class Budgets:
    """Admission and settlement against budgets; one per app, kept across reloads."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.db: Database | None = None
        self.local: LocalBudgets | None = None
        self._background = Background()
        self._shared: dict[str, RedisBudgets] = {}  # by redis_url
        self.alerts = Alerts(metrics, self._background.spawn)
        self._warned = False
        # Reservation names, unique across replicas: a random prefix, then a count.
        self._ids = itertools.count()
        self._prefix = secrets.token_hex(6)
        self._day: tuple[int, str] = (-1, "")  # (unix day, its budget period)
        self._memo: dict[tuple[object, ...], tuple[GatewayConfig, Applies | None]] = {}

    def prepare(
        self,
        config: GatewayConfig,
        principal: Principal,
        call: Call,
        targets: Iterable[Target],
        budget_key: str | None,
        prices: PriceBook,
        free: bool = False,
    ) -> Pending | None:
        """What the request asks of the budgets (its estimate in each that applies),
        nothing asked yet (``gate.admit`` asks, then ``place`` reserves): None when no
        budget applies (or there is no database to hold them). ``free``: the request is
        known to cost nothing (an exact cache hit): checked exactly as any other, but it
        reserves nothing, so no estimate is worked out."""
        applies = self._applies(config, principal, budget_key)
        if applies is None:
            return None
        if self.db is None:
            if not self._warned:
                log.error("budgets are configured but there is no database: not enforced")
                self._warned = True
            return None
        if free:
            asks = applies.free
        else:
            cost, tokens = estimate(call, targets, prices)
            asks = tuple(
                [queries.Ask(scope, usd, most, cost, tokens) for scope, usd, most in applies.scopes]
            )
        shared = self.shared_for(config.limits)
        member = "" if shared is None else f"{self._prefix}{next(self._ids):x}"
        return Pending(self._period(), asks, applies, shared, member)

    async def place(
        self, pending: Pending, policy: str, verdict: list[int] | Unasked | None = UNASKED
    ) -> Hold | None:
        """Reserve ``pending`` (or 429); ``verdict``: Redis's answer to it when the
        caller asked already (``RedisBudgets.admit``'s; None: Redis cannot be reached)."""
        period, asks, shared = pending.period, pending.asks, pending.shared
        applies = pending.applies
        specs = applies.specs
        if shared is not None:
            hold = await self._admit_shared(shared, pending, policy, verdict)
            if hold is not None:
                return hold
            if policy == "allow":
                return Hold(period, asks, specs, local=False, shared=shared)
            if policy == "deny":
                raise RateLimited(
                    "Budgets cannot be checked right now; retry shortly",
                    headers={"Retry-After": "1"},
                )
        local = self.local
        if local is None:
            return None
        refused = local.reserve(period, asks)  # no await while every month is in memory
        if refused is None:
            if not await local.ready(period, asks):
                return Hold(period, asks, specs, local=False)  # unchecked; spend recorded
            refused = local.reserve(period, asks)
            assert refused is not None  # ready and reserve with no await in between
        if refused >= 0:
            self._refuse(asks[refused].scope, period)
        return Hold(period, asks, specs, shared=shared, applies=applies)

    def _applies(
        self, config: GatewayConfig, principal: Principal, budget_key: str | None
    ) -> Applies | None:
        """``scopes_for`` and what follows from it, remembered per config snapshot, key
        and budget key (bounded: past 4096 entries the memo starts afresh)."""
        memo = (id(config), principal.name, id(principal.budget), budget_key)
        found = self._memo.get(memo)
        if found is not None and found[0] is config:
            return found[1]
        if len(self._memo) > 4096:  # old snapshots' entries, or many budget keys
            self._memo.clear()
        scopes = scopes_for(config, principal, budget_key)
        applies = None
        if scopes:
            levels = config.budgets.alerts
            limits = limits_of(scopes)
            applies = Applies(
                config,
                limits,
                tuple(spec for _, spec in scopes),
                levels,
                tuple(quiet_below(spec, levels) for _, spec in scopes),
                tuple(queries.Ask(scope, usd, most, 0, 0) for scope, usd, most in limits),
            )
        self._memo[memo] = (config, applies)
        return applies

    def open(self, db: Database, metrics: Metrics, bound: int) -> None:
        """Use ``db`` (at start, for the life of the process) and start writing spend to it."""
        self.db = db
        self.local = LocalBudgets(db, metrics, bound)
        self.local.writer.start()

    async def _admit_shared(
        self,
        shared: RedisBudgets,
        pending: Pending,
        policy: str,
        verdict: list[int] | Unasked | None,
    ) -> Hold | None:
        """Reserve in Redis, seeding the month's counters from the database when
        Redis has none; None when Redis cannot be reached."""
        period, asks, member = pending.period, pending.asks, pending.member
        specs = pending.applies.specs
        until = expire_at(period)
        if isinstance(verdict, Unasked):
            verdict = await shared.admit(period, until, asks, member, None, policy)
        if verdict and verdict[0] < 0:
            assert self.local is not None  # admit checked the database
            try:  # the database's spend and this process's not written yet
                seeds = await self.local.report([(period, ask.scope) for ask in asks], period)
            except DB_ERRORS as exc:
                log.error("budgets: cannot read this month's spend (%s); admitted unchecked", exc)
                return Hold(period, asks, specs, local=False, shared=shared)
            verdict = await shared.admit(period, until, asks, member, seeds, policy)
        if verdict is None:
            return None
        if verdict:
            self._refuse(asks[verdict[0]].scope, period)
        return Hold(period, asks, specs, local=False, shared=shared, member=member)

    def _period(self) -> str:
        """``period_of()`` now, worked out once a day (strftime costs µs per request)."""
        day = int(time.time() // 86400)
        if day != self._day[0]:
            self._day = (day, period_of())
        return self._day[1]

    def _refuse(self, scope: str, period: str) -> None:
        self.metrics.budget_rejections.labels(scope.partition(":")[0]).inc()
        raise BudgetExceeded(
            f"The monthly budget of {describe(scope)} is spent for {period}; "
            f"it renews at {period_end(period)}"
        )

    async def release(self, hold: Hold | None) -> None:
        """Undo ``admit``'s reservation of a request that was not served."""
        given = self.give_back(hold)
        if given is not None:
            await asyncio.shield(given)

    def give_back(self, hold: Hold | None) -> asyncio.Task[None] | None:
        """``release`` without waiting: done in memory now, Redis's part started (and
        waited for at shutdown); that part's task, if any."""
        if hold is None or self.local is None:
            return None
        if hold.local:
            self.local.settle(hold.period, hold.asks, True, 0, 0)
        if hold.shared is not None and hold.member and reserves(hold.asks):
            scopes = [ask.scope for ask in hold.asks]
            work = self._release_shared(hold.shared, hold.period, scopes, hold.member)
            return self._background.spawn(work)
        return None

    def hand_off(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` to its end whatever becomes of the request (shutdown waits)."""
        self._background.spawn(work)

    @staticmethod
    async def _release_shared(
        shared: RedisBudgets, period: str, scopes: list[str], member: str
    ) -> None:
        await shared.settle(period, scopes, member, 0, 0)

    async def settle(
        self,
        hold: Hold | None,
        spend: Spend,
        alerts: tuple[float, ...],
        webhook: str | None,
        losers: tuple[Spend, ...] = (),
        limits: JointLimits | None = None,
    ) -> None:
        """Replace the reservation by what was spent; ``losers``: what the request's
        hedged racers that lost spent, paid for all the same (and the calls made for
        it: ``gate.settle``); ``limits``: the limits'
        Redis settlement, sent with the budgets' in one call (the caller checked
        ``owes_redis``)."""
        local, db = self.local, self.db
        if hold is None or local is None or db is None:
            return
        cost, used = total(spend, losers)
        # In memory, the spend queued for the writer: no database on the request's path.
        after = local.settle(hold.period, hold.asks, hold.local, cost, used)
        if hold.shared is not None:  # Redis counts it all (also when reserved elsewhere)
            if not (cost or used or reserves(hold.asks)):
                return  # a cache hit: nothing was held in Redis and nothing is owed
            scopes = [ask.scope for ask in hold.asks]
            work = self._settle_shared(db, hold, scopes, cost, used, alerts, webhook, limits)
            # Shielded: a second cancellation of the handler must not lose the spend.
            await asyncio.shield(self._background.spawn(work))
            return
        applies = hold.applies
        if applies is not None and applies.levels is alerts and quiet(after, hold.asks, applies):
            return  # below every scope's lowest alert level (nearly always): none is due
        due = self._alerts_due(db, hold, after, alerts, webhook)
        if due:  # rare (a threshold crossed): claimed in the database, in turn
            # One task for them all, shielded: taken as fired when found due, each is
            # fired even if the handler is cancelled while an earlier one is claimed.
            await asyncio.shield(self._background.spawn(_in_turn(due)))

    def owes_redis(self, hold: Hold | None, spend: Spend, losers: tuple[Spend, ...]) -> bool:
        """Whether ``settle`` will send this request's spend to Redis."""
        if hold is None or hold.shared is None or self.local is None or self.db is None:
            return False
        cost, used = total(spend, losers)
        return bool(cost or used or reserves(hold.asks))

    async def _settle_shared(
        self,
        db: Database,
        hold: Hold,
        scopes: list[str],
        cost: int,
        used: int,
        alerts: tuple[float, ...],
        webhook: str | None,
        limits: JointLimits | None,
    ) -> None:
        shared = hold.shared
        assert shared is not None
        if limits is None:
            after = await shared.settle(hold.period, scopes, hold.member, cost, used)
        else:
            from llmgw.budgets import joint  # (imports Redis's client: only with Redis)

            counters, parts = limits
            after = await joint.settle(
                shared, counters, parts, hold.period, scopes, hold.member, cost, used
            )
        for scope, spec in zip(scopes, hold.specs, strict=True):
            if after is not None and scope in after:
                await self.alerts.check(
                    db, shared, hold.period, scope, spec, after[scope], alerts, webhook
                )

    def _alerts_due(
        self,
        db: Database,
        hold: Hold,
        after: dict[str, tuple[int, int]],
        levels: tuple[float, ...],
        webhook: str | None,
    ) -> list[Coroutine[Any, Any, None]]:
        """The firing of each alert level this spend reached (rare); no I/O."""
        due: list[Coroutine[Any, Any, None]] = []
        for scope, spec in zip((ask.scope for ask in hold.asks), hold.specs, strict=True):
            if scope not in after:
                continue
            for level in self.alerts.due(hold.period, scope, spec, after[scope], levels):
                due.append(
                    self.alerts.fire(
                        db, None, scope, hold.period, level, spec, after[scope], webhook
                    )
                )
        return due

    async def shared_report(
        self, limits: LimitsConfig, period: str, scopes: list[str], levels: tuple[float, ...]
    ) -> tuple[dict[str, tuple[int, int]], dict[str, list[float]]] | None:
        """The spend and alerts Redis holds for ``scopes`` (redis backend), or None."""
        shared = self.shared_for(limits)
        if shared is None:
            return None
        names = [f"{level:g}" for level in levels]
        report = await shared.report(period, scopes, names)
        if report is None:
            return None
        spend, fired = report
        return spend, {scope: [float(name) for name in got] for scope, got in fired.items()}

    def shared_for(self, limits: LimitsConfig) -> RedisBudgets | None:
        if limits.backend != "redis" or not limits.redis_url:
            return None
        shared = self._shared.get(limits.redis_url)
        if shared is None:
            # Imported here: a gateway that never uses Redis never loads its client.
            from llmgw.budgets.redis import RedisBudgets

            shared = self._shared[limits.redis_url] = RedisBudgets(limits.redis_url)
        return shared

    async def spend(self, period: str) -> dict[str, tuple[int, int]]:
        """Every scope's (spent, tokens) of ``period`` in the database, plus this
        process's spend not written yet: exact right after a request."""
        return {} if self.local is None else await self.local.report(None, period)

    async def close(self) -> None:
        """Finish the work handed off, then write every spend still pending."""
        await self._background.drain(10)
        if self.local is not None:
            await self.local.writer.close()
        await self.alerts.close()
        for shared in self._shared.values():
            await shared.close()
        self._shared.clear()


async def _in_turn(works: list[Coroutine[Any, Any, None]]) -> None:
    """Each of ``works`` awaited, in order."""
    for work in works:
        await work
