"""Reading the ledger: usage over a time range grouped as asked, and recent requests.

A hedged racer's row (``hedge_loser``) adds its tokens and cost to every figure and
group it falls in, and no request: ``requests`` counts the client's requests. The
recent requests are the clients' requests, each with the racers' spend it caused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, case, false, func, select, true
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from llmgw.store.engine import Database
from llmgw.store.tables import requests

NANO = 1_000_000_000
GROUPS = ("key", "model", "provider", "day", "budget_key", "endpoint")
RECENT_FIELDS = (
    "request_id",
    "ts",
    "key",
    "budget_key",
    "model",
    "provider",
    "upstream_model",
    "endpoint",
    "status",
    "cache",
    "prompt_tokens",
    "completion_tokens",
    "cost_nano_usd",
    "latency_ms",
    "error",
    "tags",
    "attempts",
)


def group_column(name: str) -> ColumnElement[Any]:
    """The column for a ``group_by`` item: a field, or ``tag:<name>``."""
    if name.startswith("tag:"):
        tag: ColumnElement[Any] = requests.c.tags[name[4:]].as_string()
        return tag
    column: ColumnElement[Any] = requests.c[name]
    return column


async def usage(
    db: Database, since: float | None, until: float | None, group_by: Sequence[str]
) -> dict[str, Any]:
    c = requests.c
    conditions = []
    if since is not None:
        conditions.append(c.ts >= since)
    if until is not None:
        conditions.append(c.ts < until)
    columns = [group_column(name).label(f"g{i}") for i, name in enumerate(group_by)]
    figures = [
        func.coalesce(func.sum(case((c.hedge_loser, 0), else_=1)), 0).label("requests"),
        func.coalesce(func.sum(c.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(c.completion_tokens), 0).label("completion_tokens"),
        func.coalesce(func.sum(c.cost_nano_usd), 0).label("cost_nano_usd"),
    ]
    query = select(*columns, *figures).where(and_(true(), *conditions))
    if columns:
        query = query.group_by(*columns).order_by(*columns)
    async with db.engine.connect() as conn:
        rows = list(await conn.execute(query))
    groups = []
    total = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
    total_nano = 0
    for row in rows:
        figures_of = row._mapping
        entry: dict[str, Any] = {name: figures_of[f"g{i}"] for i, name in enumerate(group_by)}
        entry.update(
            requests=int(figures_of["requests"]),
            prompt_tokens=int(figures_of["prompt_tokens"]),
            completion_tokens=int(figures_of["completion_tokens"]),
            cost_usd=round(int(figures_of["cost_nano_usd"]) / NANO, 9),
        )
        groups.append(entry)
        for field in ("requests", "prompt_tokens", "completion_tokens"):
            total[field] += entry[field]
        total_nano += int(figures_of["cost_nano_usd"])
    total["cost_usd"] = round(total_nano / NANO, 9)
    return {
        "source": "database",
        "from": since,
        "to": until,
        "group_by": list(group_by),
        "total": total,
        "groups": groups if group_by else [],
    }


async def recent(
    db: Database, limit: int, key: str | None, model: str | None, status: int | None
) -> list[dict[str, Any]]:
    c = requests.c
    query = select(*(c[name] for name in RECENT_FIELDS)).where(c.hedge_loser == false())
    if key is not None:
        query = query.where(c.key == key)
    if model is not None:
        query = query.where(c.model == model)
    if status is not None:
        query = query.where(c.status == status)
    query = query.order_by(c.ts.desc(), c.id.desc()).limit(limit)
    async with db.engine.connect() as conn:
        rows = list(await conn.execute(query))
        racers = await _racers(conn, rows) if rows else {}
    out = []
    for row in rows:
        item = {name: row._mapping[name] for name in RECENT_FIELDS}
        item["cost_usd"] = _usd(item.pop("cost_nano_usd"))
        item["hedge_losers"] = racers.get(item["request_id"], [])
        out.append(item)
    return out


RACER_FIELDS = ("provider", "upstream_model", "prompt_tokens", "completion_tokens")


async def _racers(conn: AsyncConnection, rows: list[Row[Any]]) -> dict[str, list[dict[str, Any]]]:
    """The hedge racers' rows of the requests listed, by request id. A racer's row has
    its request's ``ts``, so the lookup stays within the listed rows' span (the index)."""
    c = requests.c
    times = [row._mapping["ts"] for row in rows]
    query = (
        select(c.request_id, c.cost_nano_usd, *(c[name] for name in RACER_FIELDS))
        .where(c.hedge_loser == true(), c.ts >= min(times), c.ts <= max(times))
        .where(c.request_id.in_({row._mapping["request_id"] for row in rows}))
        .order_by(c.id)
    )
    found: dict[str, list[dict[str, Any]]] = {}
    for racer in await conn.execute(query):
        fields = racer._mapping
        entry = {name: fields[name] for name in RACER_FIELDS}
        entry["cost_usd"] = _usd(fields["cost_nano_usd"])
        found.setdefault(fields["request_id"], []).append(entry)
    return found


def _usd(nano: int | None) -> float | None:
    return None if nano is None else round(nano / NANO, 9)
