"""Budget spend in the database: each month's spent nano-USD and tokens per scope,
and the alerts fired. Nothing here is on a request's path: the spend is added in
batches by ``store/budget_writer.py`` and read when a scope is first used in a
process, then about once a second (``budgets/local.py``). The ``reserved_*`` columns
are no longer used (reservations live in each process's memory) and stay 0.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from llmgw.store.engine import Database
from llmgw.store.tables import budget_alerts, budget_spend


class Ask(NamedTuple):  # a tuple: made per scope and request, cheaper than a frozen dataclass
    scope: str
    usd_nano: int | None  # the limit, or None
    tokens: int | None
    reserve_nano: int
    reserve_tokens: int


def _insert(conn: AsyncConnection, table: Any) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _add_spend(dialect: Any) -> Any:
    """``spent += delta, tokens += delta`` per row, inserting rows not there yet."""
    s = budget_spend.c
    statement = dialect.insert(budget_spend)
    return statement.on_conflict_do_update(
        index_elements=[s.scope, s.period],
        set_={
            "spent_nano_usd": s.spent_nano_usd + statement.excluded.spent_nano_usd,
            "tokens": s.tokens + statement.excluded.tokens,
        },
    )


# Built once (immutable): building the upsert cost a quarter of each write's CPU.
_ADD_SPEND = {"sqlite": _add_spend(sqlite), "postgresql": _add_spend(postgresql)}
_SPENT = select(budget_spend.c.scope, budget_spend.c.spent_nano_usd, budget_spend.c.tokens).where(
    and_(
        budget_spend.c.period == bindparam("period"),
        budget_spend.c.scope.in_(bindparam("scopes", expanding=True)),
    )
)


async def add_spend(db: Database, deltas: Mapping[tuple[str, str], tuple[int, int]]) -> None:
    """Add each (period, scope)'s (nano-USD, tokens) to its row, in one transaction.

    Rows in (period, scope) order, so replicas writing the same rows at once take
    their locks in the same order (PostgreSQL)."""
    if not deltas:
        return
    rows = [
        {
            "scope": scope,
            "period": period,
            "spent_nano_usd": nano,
            "reserved_nano_usd": 0,
            "tokens": tokens,
            "reserved_tokens": 0,
        }
        for (period, scope), (nano, tokens) in sorted(deltas.items())
    ]
    async with db.engine.begin() as conn:
        await conn.execute(_ADD_SPEND[conn.dialect.name], rows)


async def spent(
    db: Database, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, int]]:
    """The (spent nano-USD, tokens) the database holds for each (period, scope) of
    ``keys`` that has a row: one ``SELECT`` per period (one, but at a month's turn)."""
    by_period: dict[str, list[str]] = {}
    for period, scope in keys:
        by_period.setdefault(period, []).append(scope)
    found: dict[tuple[str, str], tuple[int, int]] = {}
    async with db.engine.connect() as conn:
        for period, scopes in by_period.items():
            result = await conn.execute(_SPENT, {"period": period, "scopes": scopes})
            for scope, nano, tokens in result:
                found[(period, scope)] = (int(nano), int(tokens))
    return found


async def claim_alert(db: Database, scope: str, period: str, fraction: str, detail: str) -> bool:
    """Record the alert; True only for the one caller (of every replica) that did."""
    async with db.engine.begin() as conn:
        statement = _insert(conn, budget_alerts).on_conflict_do_nothing()
        row = {
            "scope": scope,
            "period": period,
            "fraction": fraction,
            "fired_at": time.time(),
            "detail": detail,
        }
        result = await conn.execute(statement, row)
        return bool(result.rowcount)


async def spend(db: Database, period: str, scopes: Sequence[str] | None = None) -> list[Any]:
    """Rows of ``period`` (those of ``scopes``, or every one)."""
    s = budget_spend.c
    query = select(budget_spend).where(s.period == period)
    if scopes is not None:
        query = query.where(or_(s.scope.in_(list(scopes)), s.scope == ""))
    async with db.engine.connect() as conn:
        return list(await conn.execute(query.order_by(s.scope)))


async def alerts(db: Database, period: str) -> dict[str, list[float]]:
    a = budget_alerts.c
    fired: dict[str, list[float]] = {}
    async with db.engine.connect() as conn:
        result = await conn.execute(
            select(a.scope, a.fraction).where(a.period == period).order_by(a.fraction)
        )
        for scope, fraction in result:
            fired.setdefault(scope, []).append(float(fraction))
    return fired
