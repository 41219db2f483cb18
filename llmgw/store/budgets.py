"""Budget spend in the database: reserve at admission, settle at the end, alerts.

A reservation is one conditional ``UPDATE`` per scope inside one transaction: it
succeeds only while the scope's spent plus reserved amount is under its limit, so
replicas sharing the database can never all pass the same last cent (PostgreSQL
re-checks the condition on the locked row; SQLite writes one transaction at a time).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from llmgw.store.engine import Database
from llmgw.store.tables import budget_alerts, budget_spend


@dataclass(frozen=True, slots=True)
class Ask:
    scope: str
    usd_nano: int | None  # the limit, or None
    tokens: int | None
    reserve_nano: int
    reserve_tokens: int


def _insert(conn: AsyncConnection, table: Any) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


async def reserve(db: Database, period: str, asks: Sequence[Ask]) -> int:
    """Reserve in every scope, or in none: the index of the spent scope, or -1."""
    try:
        await _reserve(db, period, asks)
    except _Refused as refused:
        return refused.index
    return -1


class _Refused(Exception):
    def __init__(self, index: int) -> None:
        self.index = index


async def _reserve(db: Database, period: str, asks: Sequence[Ask]) -> None:
    s = budget_spend.c
    async with db.engine.begin() as conn:  # an exception rolls every scope back
        rows = [
            {
                "scope": a.scope,
                "period": period,
                "spent_nano_usd": 0,
                "reserved_nano_usd": 0,
                "tokens": 0,
                "reserved_tokens": 0,
            }
            for a in asks
        ]
        await conn.execute(_insert(conn, budget_spend).on_conflict_do_nothing(), rows)
        for index, ask in enumerate(asks):
            conditions = [s.scope == ask.scope, s.period == period]
            if ask.usd_nano is not None:
                conditions.append(s.spent_nano_usd + s.reserved_nano_usd < ask.usd_nano)
            if ask.tokens is not None:
                conditions.append(s.tokens + s.reserved_tokens < ask.tokens)
            result = await conn.execute(
                update(budget_spend)
                .where(and_(*conditions))
                .values(
                    reserved_nano_usd=s.reserved_nano_usd + ask.reserve_nano,
                    reserved_tokens=s.reserved_tokens + ask.reserve_tokens,
                )
            )
            if result.rowcount == 0:
                raise _Refused(index)


async def settle(
    db: Database, period: str, asks: Sequence[Ask], cost_nano: int, tokens: int
) -> dict[str, tuple[int, int]]:
    """Replace the reservations by what was spent; each scope's (spent, tokens) after."""
    s = budget_spend.c
    after: dict[str, tuple[int, int]] = {}
    async with db.engine.begin() as conn:
        for ask in asks:
            await conn.execute(
                update(budget_spend)
                .where(and_(s.scope == ask.scope, s.period == period))
                .values(
                    spent_nano_usd=s.spent_nano_usd + cost_nano,
                    reserved_nano_usd=s.reserved_nano_usd - ask.reserve_nano,
                    tokens=s.tokens + tokens,
                    reserved_tokens=s.reserved_tokens - ask.reserve_tokens,
                )
            )
        result = await conn.execute(
            select(s.scope, s.spent_nano_usd, s.tokens).where(
                and_(s.period == period, s.scope.in_([a.scope for a in asks]))
            )
        )
        for scope, spent, used in result:
            after[scope] = (int(spent), int(used))
    return after


async def record(
    db: Database, period: str, scopes: Sequence[str], cost_nano: int, tokens: int
) -> dict[str, tuple[int, int]]:
    """Add a request's spend held elsewhere (Redis) to each scope's row, so the
    database knows the month's spend too; each scope's (spent, tokens) after."""
    s = budget_spend.c
    rows = [
        {
            "scope": scope,
            "period": period,
            "spent_nano_usd": 0,
            "reserved_nano_usd": 0,
            "tokens": 0,
            "reserved_tokens": 0,
        }
        for scope in scopes
    ]
    after: dict[str, tuple[int, int]] = {}
    async with db.engine.begin() as conn:
        await conn.execute(_insert(conn, budget_spend).on_conflict_do_nothing(), rows)
        await conn.execute(
            update(budget_spend)
            .where(and_(s.period == period, s.scope.in_(list(scopes))))
            .values(spent_nano_usd=s.spent_nano_usd + cost_nano, tokens=s.tokens + tokens)
        )
        result = await conn.execute(
            select(s.scope, s.spent_nano_usd, s.tokens).where(
                and_(s.period == period, s.scope.in_(list(scopes)))
            )
        )
        for scope, spent, used in result:
            after[scope] = (int(spent), int(used))
    return after


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
