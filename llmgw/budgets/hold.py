"""What budget admission hands on: ``Pending`` (worked out, nothing asked yet), then
``Hold`` (what ``settle`` needs), and ``Applies`` (one request shape's budgets)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmgw.config import GatewayConfig
from llmgw.config.store import BudgetSpec
from llmgw.observe.usage import Spend
from llmgw.store import budgets as queries

if TYPE_CHECKING:
    from llmgw.budgets.redis import RedisBudgets


@dataclass(slots=True)
class Hold:
    """What ``settle`` needs: where the estimate was reserved, and for which scopes."""

    period: str
    asks: tuple[queries.Ask, ...]
    specs: tuple[BudgetSpec, ...]
    local: bool = True  # reserved in this process's memory (budgets/local.py)
    shared: RedisBudgets | None = None  # Redis holds these budgets
    member: str = ""  # its reservation's name in Redis ("": none)
    applies: Applies | None = None  # what admission worked out of the snapshot


class Unasked:
    """Redis was not asked yet (``place``'s default)."""


UNASKED = Unasked()


@dataclass(slots=True)
class Pending:
    """A request's budgets as ``prepare`` worked them out, nothing reserved yet."""

    period: str
    asks: tuple[queries.Ask, ...]
    applies: Applies
    shared: RedisBudgets | None  # Redis holds these budgets
    member: str  # its reservation's name in Redis ("" when not)


@dataclass(frozen=True, slots=True)
class Applies:
    """The budgets of one request shape in one config snapshot, worked out once: each
    scope's name and limits, and below what spend no alert level can be due."""

    config: GatewayConfig
    scopes: tuple[tuple[str, int | None, int | None], ...]  # scope, nano-USD, tokens limits
    specs: tuple[BudgetSpec, ...]
    levels: tuple[float, ...]  # budgets.alerts
    quiet: tuple[tuple[float, float], ...]  # per scope: (nano-USD, tokens) under the lowest
    free: tuple[queries.Ask, ...]  # a free request's asks: every check, nothing reserved


def quiet(
    after: dict[str, tuple[int, int]], asks: tuple[queries.Ask, ...], applies: Applies
) -> bool:
    """No scope's spend after this request reaches its lowest alert level."""
    for ask, (nano, tokens) in zip(asks, applies.quiet, strict=True):
        total = after.get(ask.scope)
        if total is not None and (total[0] >= nano or total[1] >= tokens):
            return False
    return True


def total(spend: Spend, losers: tuple[Spend, ...]) -> tuple[int, int]:
    """(nano-USD, tokens) the request and its hedged racers that lost spent."""
    used = spend.prompt_tokens + spend.completion_tokens
    cost = spend.cost_nano_usd
    for loser in losers:
        used += loser.prompt_tokens + loser.completion_tokens
        cost += loser.cost_nano_usd
    return cost, used


def reserves(asks: tuple[queries.Ask, ...]) -> bool:
    """Whether admission held anything for these asks (a cache hit's hold nothing)."""
    return any(ask.reserve_nano or ask.reserve_tokens for ask in asks)
