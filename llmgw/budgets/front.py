"""Monthly budgets per key, per ``x-budget-key`` and global, with alerts (SPEC §11).

A request is checked against every budget that applies to it: its key's
(``auth.keys[].budget`` or a managed key's), ``budgets.per_budget_key`` for the
``x-budget-key`` it sent, and ``budgets.global``. Like ``tpm``, admission reserves
an estimate — the prompt's tokens plus ``max_tokens`` (or as many again as the
prompt when unset), priced at the dearest target — and the real usage replaces it
when the request ends. A scope whose spent plus reserved amount has reached its
limit refuses with ``429 insufficient_quota / budget_exceeded`` and
``x-should-retry: false``; so the request that crosses a limit is served and the
next is refused, and replicas sharing the database overshoot by at most the
requests in flight. Periods are calendar months, UTC.

Each ``budgets.alerts`` fraction fires once per scope and period, on every replica
together: the first replica to record it in the database logs it, counts it in
``llmgw_budget_alerts_total`` and POSTs it to ``budgets.webhook`` (retried 3 times).
The spend lives in the database (``store/budgets.py``), which every replica shares.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from sqlalchemy.exc import SQLAlchemyError

from llmgw.config import GatewayConfig
from llmgw.config.store import BudgetSpec
from llmgw.core import Call, Principal, estimate_prompt_tokens
from llmgw.errors import BudgetExceeded, InvalidRequest
from llmgw.limits.types import Target
from llmgw.observe.metrics import Metrics
from llmgw.observe.usage import NANO, Spend, price_for
from llmgw.store import budgets as queries
from llmgw.store.engine import Database

log = logging.getLogger(__name__)
BUDGET_KEY_HEADER = "x-budget-key"
MAX_BUDGET_KEY = 200
WEBHOOK_ATTEMPTS = 3


def period_of(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m")


def period_end(period: str) -> str:
    year, month = (int(part) for part in period.split("-"))
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return f"{year:04d}-{month:02d}-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class Hold:
    period: str
    asks: tuple[queries.Ask, ...]
    specs: tuple[BudgetSpec, ...]


def scopes_for(
    config: GatewayConfig, principal: Principal, budget_key: str | None
) -> list[tuple[str, BudgetSpec]]:
    found: list[tuple[str, BudgetSpec]] = []
    if principal.budget is not None and principal.name is not None:
        found.append((f"key:{principal.name}", principal.budget))
    per = config.budgets.per_budget_key
    if budget_key is not None and per is not None:
        found.append((f"budget_key:{budget_key}", per))
    if config.budgets.global_ is not None:
        found.append(("global", config.budgets.global_))
    return [
        (scope, spec)
        for scope, spec in found
        if spec.monthly_usd is not None or spec.monthly_tokens is not None
    ]


def budget_key_of(headers: Mapping[str, str]) -> str | None:
    value = headers.get(BUDGET_KEY_HEADER)
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > MAX_BUDGET_KEY or not value.isprintable():
        raise InvalidRequest(
            f"'{BUDGET_KEY_HEADER}' must be 1 to {MAX_BUDGET_KEY} printable characters"
        )
    return value


def estimate(config: GatewayConfig, call: Call, targets: Iterable[Target]) -> tuple[int, int]:
    """(nano-USD, tokens) reserved at admission."""
    prompt = estimate_prompt_tokens(call)
    limit = call.body.get("max_tokens", call.body.get("max_completion_tokens"))
    completion = limit if isinstance(limit, int) and limit > 0 else prompt
    if call.endpoint == "embeddings":
        completion = 0
    cost = 0
    for target in targets:
        price = price_for(config.prices, target.provider, target.model)
        if price is not None:
            cost = max(cost, round((prompt * price[0] + completion * price[1]) * 1000))
    return cost, prompt + completion


class Budgets:
    """Admission and settlement against budgets; one per app, kept across reloads."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.db: Database | None = None
        self._fired: set[tuple[str, str, float]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._warned = False

    async def admit(
        self,
        config: GatewayConfig,
        principal: Principal,
        call: Call,
        targets: Iterable[Target],
        budget_key: str | None,
    ) -> Hold | None:
        scopes = scopes_for(config, principal, budget_key)
        if not scopes:
            return None
        if self.db is None:
            if not self._warned:
                log.error("budgets are configured but there is no database: not enforced")
                self._warned = True
            return None
        cost, tokens = estimate(config, call, targets)
        asks = tuple(
            queries.Ask(
                scope,
                None if spec.monthly_usd is None else round(spec.monthly_usd * NANO),
                spec.monthly_tokens,
                cost,
                tokens,
            )
            for scope, spec in scopes
        )
        period = period_of()
        try:
            refused = await queries.reserve(self.db, period, asks)
        except (SQLAlchemyError, OSError) as exc:  # fail open, loudly: serving goes on
            log.error("budgets: cannot reach the database (%s); request admitted unchecked", exc)
            return None
        if refused >= 0:
            scope = asks[refused].scope
            self.metrics.budget_rejections.labels(scope.partition(":")[0]).inc()
            raise BudgetExceeded(
                f"The monthly budget of {_describe(scope)} is spent for {period}; "
                f"it renews at {period_end(period)}"
            )
        return Hold(period, asks, tuple(spec for _, spec in scopes))

    async def release(self, hold: Hold | None) -> None:
        """Undo ``admit``'s reservation of a request that was not served."""
        if hold is not None and self.db is not None:
            await asyncio.shield(self._spawn(self._release(self.db, hold)))

    async def _release(self, db: Database, hold: Hold) -> None:
        try:
            await queries.settle(db, hold.period, hold.asks, 0, 0)
        except (SQLAlchemyError, OSError) as exc:
            log.error("budgets: cannot release a reservation (%s)", exc)

    async def settle(
        self, hold: Hold | None, spend: Spend, alerts: tuple[float, ...], webhook: str | None
    ) -> None:
        if hold is None or self.db is None:
            return
        work = self._settle(self.db, hold, spend, alerts, webhook)
        # Shielded: a second cancellation of the handler must not lose the spend.
        await asyncio.shield(self._spawn(work))

    async def _settle(
        self, db: Database, hold: Hold, spend: Spend, alerts: tuple[float, ...], webhook: str | None
    ) -> None:
        used = spend.prompt_tokens + spend.completion_tokens
        try:
            after = await queries.settle(db, hold.period, hold.asks, spend.cost_nano_usd, used)
        except (SQLAlchemyError, OSError) as exc:
            log.error("budgets: cannot record a request's spend (%s): %s", exc, hold.asks)
            return
        for ask, spec in zip(hold.asks, hold.specs, strict=True):
            spent, tokens = after.get(ask.scope, (0, 0))
            fraction = 0.0
            if ask.usd_nano:
                fraction = spent / ask.usd_nano
            if ask.tokens:
                fraction = max(fraction, tokens / ask.tokens)
            for level in alerts:
                if fraction >= level and (ask.scope, hold.period, level) not in self._fired:
                    self._fired.add((ask.scope, hold.period, level))
                    await self._alert(
                        db, ask.scope, hold.period, level, spec, spent, tokens, webhook
                    )

    async def _alert(
        self,
        db: Database,
        scope: str,
        period: str,
        level: float,
        spec: BudgetSpec,
        spent: int,
        tokens: int,
        webhook: str | None,
    ) -> None:
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
        try:
            claimed = await queries.claim_alert(db, scope, period, f"{level:g}", str(event))
        except (SQLAlchemyError, OSError) as exc:
            log.error("budgets: cannot record an alert (%s); firing it here", exc)
            claimed = True
        if not claimed:
            return  # another replica fired it
        log.warning(
            "budget alert: %s has used %d%% of its %s budget",
            _describe(scope),
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

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        if self._session is not None:
            await self._session.close()


def _describe(scope: str) -> str:
    kind, _, name = scope.partition(":")
    if kind == "key":
        return f"API key '{name}'"
    if kind == "budget_key":
        return f"budget key '{name}'"
    return "the gateway"
