"""Budget alerts: each ``budgets.alerts`` fraction once per scope and month, on every
replica together. The first replica to claim it — in Redis (``SET NX``) when the
budgets live there, else in the database — logs it, counts it in
``llmgw_budget_alerts_total`` and POSTs it to ``budgets.webhook`` (3 tries)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import aiohttp
from sqlalchemy.exc import SQLAlchemyError

from llmgw.budgets.scopes import describe, expire_at, period_end
from llmgw.config.store import BudgetSpec
from llmgw.observe.metrics import Metrics
from llmgw.observe.usage import NANO
from llmgw.store import budgets as queries
from llmgw.store.engine import Database

if TYPE_CHECKING:
    from llmgw.budgets.redis import RedisBudgets

log = logging.getLogger("llmgw.budgets")
WEBHOOK_ATTEMPTS = 3

Spawn = Callable[[Coroutine[Any, Any, None]], object]


class Alerts:
    def __init__(self, metrics: Metrics, spawn: Spawn) -> None:
        self.metrics = metrics
        self._spawn = spawn
        self._fired: set[tuple[str, str, float]] = set()
        self._session: aiohttp.ClientSession | None = None

    async def check(
        self,
        db: Database,
        shared: RedisBudgets | None,
        period: str,
        scope: str,
        spec: BudgetSpec,
        usage: tuple[int, int],
        levels: tuple[float, ...],
        webhook: str | None,
    ) -> None:
        """Fire every level ``usage`` (spent nano-USD, tokens) has reached."""
        for level in self.due(period, scope, spec, usage, levels):
            await self.fire(db, shared, scope, period, level, spec, usage, webhook)

    def due(
        self,
        period: str,
        scope: str,
        spec: BudgetSpec,
        usage: tuple[int, int],
        levels: tuple[float, ...],
    ) -> list[float]:
        """The levels ``usage`` has reached that this process has not fired yet (now
        taken as fired: ``fire`` them). No I/O."""
        spent, tokens = usage
        fraction = 0.0
        if spec.monthly_usd:
            fraction = spent / (spec.monthly_usd * NANO)
        if spec.monthly_tokens:
            fraction = max(fraction, tokens / spec.monthly_tokens)
        due = []
        for level in levels:
            if fraction >= level and (scope, period, level) not in self._fired:
                self._fired.add((scope, period, level))
                due.append(level)
        return due

    async def fire(
        self,
        db: Database,
        shared: RedisBudgets | None,
        scope: str,
        period: str,
        level: float,
        spec: BudgetSpec,
        usage: tuple[int, int],
        webhook: str | None,
    ) -> None:
        """Claim the alert across replicas; the one that does logs, counts and posts it."""
        spent, tokens = usage
        event = {
            "event": "budget_alert",
            "scope": scope,
            "period": period,
            "fraction": level,
            "spent_usd": round(spent / NANO, 9),
            "limit_usd": spec.monthly_usd,
            "tokens": tokens,
            "limit_tokens": spec.monthly_tokens,
            "period_end": period_end(period),
        }
        claimed: bool | None = None
        if shared is not None:  # Redis decides across replicas; the database keeps a record
            claimed = await shared.claim_alert(period, scope, f"{level:g}", expire_at(period))
        try:
            recorded = await queries.claim_alert(db, scope, period, f"{level:g}", str(event))
        except (SQLAlchemyError, OSError) as exc:
            log.error("budgets: cannot record an alert (%s)", exc)
            recorded = True  # fire it here rather than never
        if not (recorded if claimed is None else claimed):
            return  # another replica fired it
        log.warning(
            "budget alert: %s has used %d%% of its %s budget",
            describe(scope),
            round(level * 100),
            period,
            extra={"budget_alert": event},
        )
        self.metrics.budget_alerts.labels(scope.partition(":")[0], f"{level:g}").inc()
        if webhook:
            self._spawn(self._post(webhook, event))

    async def _post(self, url: str, event: dict[str, Any]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        for attempt in range(WEBHOOK_ATTEMPTS):
            try:
                async with self._session.post(url, json=event) as response:
                    if response.status < 500 and response.status != 429:
                        if response.status >= 400:
                            log.error("budget webhook %s answered %d", url, response.status)
                        return
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("budget webhook %s failed: %s", url, exc)
            if attempt + 1 < WEBHOOK_ATTEMPTS:
                await asyncio.sleep(0.5 * 2**attempt)
        log.error("budget webhook %s: alert not delivered after %d tries", url, WEBHOOK_ATTEMPTS)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
