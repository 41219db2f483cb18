"""Managed keys in the database: created, read, changed and deleted over the admin
API. Every change bumps the ``keys_version`` counter in the same transaction; each
replica polls that one number and reloads the table when it moved."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from llmgw.store.engine import Database
from llmgw.store.tables import api_keys, counters

FIELDS = ("models", "limits", "budget", "expires_at", "cache_refresh")


class NameTaken(Exception):
    pass


async def _bump(conn: AsyncConnection) -> None:
    await conn.execute(
        update(counters).where(counters.c.name == "keys_version").values(value=counters.c.value + 1)
    )


async def create(db: Database, name: str, digest: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    now = time.time()
    row = {"name": name, "key_sha256": digest, "created_at": now, "updated_at": now}
    row.update({f: fields.get(f) for f in FIELDS})
    row["cache_refresh"] = bool(row["cache_refresh"])
    try:
        async with db.engine.begin() as conn:
            await conn.execute(insert(api_keys).values(**row))
            await _bump(conn)
    except IntegrityError:
        raise NameTaken(name) from None
    return row


async def all_keys(db: Database) -> list[dict[str, Any]]:
    async with db.engine.connect() as conn:
        result = await conn.execute(select(api_keys).order_by(api_keys.c.name))
        return [dict(row._mapping) for row in result]


async def get(db: Database, name: str) -> dict[str, Any] | None:
    async with db.engine.connect() as conn:
        result = await conn.execute(select(api_keys).where(api_keys.c.name == name))
        row = result.first()
        return None if row is None else dict(row._mapping)


async def change(db: Database, name: str, fields: Mapping[str, Any]) -> dict[str, Any] | None:
    values = {f: fields[f] for f in FIELDS if f in fields}
    values["updated_at"] = time.time()
    async with db.engine.begin() as conn:
        result = await conn.execute(update(api_keys).where(api_keys.c.name == name).values(values))
        if result.rowcount == 0:
            return None
        await _bump(conn)
    return await get(db, name)


async def remove(db: Database, name: str) -> bool:
    async with db.engine.begin() as conn:
        result = await conn.execute(delete(api_keys).where(api_keys.c.name == name))
        if result.rowcount == 0:
            return False
        await _bump(conn)
    return True


async def version(db: Database) -> int:
    async with db.engine.connect() as conn:
        result = await conn.execute(
            select(counters.c.value).where(counters.c.name == "keys_version")
        )
        return int(result.scalar_one())
