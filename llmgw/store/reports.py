"""Reading the ledger: usage over a time range grouped as asked, and recent requests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select, true

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
        func.count().label("requests"),
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
    query = select(*(c[name] for name in RECENT_FIELDS))
    if key is not None:
        query = query.where(c.key == key)
    if model is not None:
        query = query.where(c.model == model)
    if status is not None:
        query = query.where(c.status == status)
    query = query.order_by(c.ts.desc(), c.id.desc()).limit(limit)
    async with db.engine.connect() as conn:
        rows = list(await conn.execute(query))
    out = []
    for row in rows:
        item = {name: row._mapping[name] for name in RECENT_FIELDS}
        nano = item.pop("cost_nano_usd")
        item["cost_usd"] = None if nano is None else round(nano / NANO, 9)
        out.append(item)
    return out
