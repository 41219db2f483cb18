"""Which budgets apply to a request, what it reserves, and the calendar of periods."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from llmgw.config import GatewayConfig
from llmgw.config.store import BudgetSpec
from llmgw.core import Call, Principal, estimate_prompt_tokens
from llmgw.errors import InvalidRequest
from llmgw.limits.types import Target
from llmgw.observe.unit_prices import UNIT_ENDPOINTS, unit_cost_nano
from llmgw.observe.usage import NANO, PriceBook

BUDGET_KEY_HEADER = "x-budget-key"
MAX_BUDGET_KEY = 200
GRACE = 86400  # seconds a month's shared keys (Redis) outlive the month


def period_of(now: datetime | None = None) -> str:
    """The budget period (a calendar month, UTC) of ``now``: ``YYYY-MM``."""
    return (now or datetime.now(UTC)).strftime("%Y-%m")


def _next_month(period: str) -> datetime:
    year, month = (int(part) for part in period.split("-"))
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


def period_end(period: str) -> str:
    return _next_month(period).strftime("%Y-%m-%dT%H:%M:%SZ")


def expire_at(period: str) -> int:
    """When the shared keys of ``period`` expire, in unix seconds: a day after it ends."""
    return int(_next_month(period).timestamp()) + GRACE


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


def estimate(call: Call, targets: Iterable[Target], prices: PriceBook) -> tuple[int, int]:
    """(nano-USD, tokens) reserved at admission."""
    prompt = estimate_prompt_tokens(call)
    limit = call.body.get("max_tokens", call.body.get("max_completion_tokens"))
    completion = limit if isinstance(limit, int) and limit > 0 else prompt
    if call.endpoint == "embeddings":
        completion = 0
    cost = 0
    for target in targets:
        unit = prices.units(target.provider, target.model)
        if unit is not None and call.endpoint in UNIT_ENDPOINTS:
            # speech by its characters, images by the n asked for; audio in is unknown
            cost = max(cost, unit_cost_nano(unit, call, None) or 0)
            continue
        price = prices.tokens(target.provider, target.model)
        if price is not None:
            cost = max(cost, round((prompt * price[0] + completion * price[1]) * 1000))
    return cost, prompt + completion


def limits_of(
    scopes: list[tuple[str, BudgetSpec]],
) -> tuple[tuple[str, int | None, int | None], ...]:
    """Each scope's limits as its ``Ask`` carries them: (scope, nano-USD, tokens)."""
    return tuple(
        (
            scope,
            None if spec.monthly_usd is None else round(spec.monthly_usd * NANO),
            spec.monthly_tokens,
        )
        for scope, spec in scopes
    )


def quiet_below(spec: BudgetSpec, levels: tuple[float, ...]) -> tuple[float, float]:
    """(nano-USD, tokens) spent under both of which no alert level of ``spec`` can be
    due (``Alerts.due``: the spent fraction reaches a level): one comparison each
    instead of the fractions. A hair under the lowest level's figures, so float
    rounding never hides a due alert; at or above them, ``due`` decides exactly."""
    if not levels:
        return math.inf, math.inf
    lowest = min(levels)
    if lowest <= 0:
        return 0.0, 0.0  # always worth asking
    margin = lowest * (1 - 1e-9)
    usd = spec.monthly_usd * NANO * margin if spec.monthly_usd else math.inf
    tokens = spec.monthly_tokens * margin if spec.monthly_tokens else math.inf
    return usd, tokens


def describe(scope: str) -> str:
    kind, _, name = scope.partition(":")
    if kind == "key":
        return f"API key '{name}'"
    if kind == "budget_key":
        return f"budget key '{name}'"
    return "the gateway"
