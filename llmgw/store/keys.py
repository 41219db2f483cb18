"""Managed keys in the database: created, read, changed and deleted over the admin
API. Every change bumps the ``keys_version`` counter in the same transaction; each
replica polls that one number and reloads the table when it moved (``VersionProbe``:
on SQLite one statement on a connection held for it, not a pooled read)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from llmgw.store.engine import Database
from llmgw.store.tables import api_keys, counters

FIELDS = ("models", "limits", "budget", "expires_at", "cache_refresh")
_VERSION_SQL = "SELECT value FROM counters WHERE name = 'keys_version'"
_VERSION = select(counters.c.value).where(counters.c.name == "keys_version")


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
        result = await conn.execute(_VERSION)
        return int(result.scalar_one())


class ProbeFailed(Exception):
    """The held connection failed a read (it is let go; the next read opens another)."""


class VersionProbe:
    """The keys' version as the watcher polls it, twice a second on every replica.

    On SQLite a pooled read (``version``) is a checkout, a cursor, a fetch, a close and
    a rollback, each a hop to the connection's thread (~0.4 ms of CPU); the probe holds
    one pooled connection and reads with one statement, one hop (~0.05 ms). The
    statement runs outside a transaction (the driver begins none for a ``SELECT``), so
    each read sees the last commit of every replica. PostgreSQL reads stay pooled: no
    thread there. A failed read raises ``ProbeFailed``."""

    __slots__ = ("_conn", "_db", "_driver", "reads")

    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn: AsyncConnection | None = None
        self._driver: Any = None  # the aiosqlite connection under ``_conn``
        self.reads = 0

    async def read(self) -> int:
        self.reads += 1
        if not self._db.sqlite:
            return await version(self._db)
        try:
            if self._driver is None:
                self._conn = await self._db.engine.connect()
                self._driver = (await self._conn.get_raw_connection()).driver_connection
            rows = list(await self._driver.execute_fetchall(_VERSION_SQL))
            return int(rows[0][0])
        except (sqlite3.Error, ValueError, IndexError) as exc:  # ValueError: it was closed
            await self.close(failed=True)
            raise ProbeFailed(str(exc) or type(exc).__name__) from None

    async def close(self, failed: bool = False) -> None:
        """Give the held connection back to the pool (a ``failed`` one is discarded)."""
        conn, self._conn, self._driver = self._conn, None, None
        if conn is None:
            return
        try:
            if failed:
                await conn.invalidate()
            await conn.close()
        except (SQLAlchemyError, OSError, sqlite3.Error, ValueError):
            pass  # it is gone either way
