"""Managed keys (created over ``/api/v1/keys``) as principals, kept in step with the
database: every replica polls the keys' version twice a second (``store/keys.VersionProbe``)
and reloads the table when it moved, so a deletion is refused everywhere within a second."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from llmgw.config.schema import LimitSpec
from llmgw.config.store import BudgetSpec
from llmgw.core import Principal
from llmgw.store import keys as queries
from llmgw.store.engine import Database

log = logging.getLogger(__name__)
POLL_EVERY = 0.5


class ManagedKey:
    __slots__ = ("digest", "expires_at", "principal")

    def __init__(self, digest: bytes, principal: Principal, expires_at: float | None) -> None:
        self.digest = digest
        self.principal = principal
        self.expires_at = expires_at


def principal_of(row: Mapping[str, Any]) -> Principal:
    models = row.get("models")
    limits = row.get("limits")
    budget = row.get("budget")
    return Principal(
        row["name"],
        frozenset(models) if models is not None else None,
        LimitSpec(**limits) if limits else None,
        bool(row.get("cache_refresh")),
        BudgetSpec(**budget) if budget else None,
    )


def digest_of(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


class ManagedKeys:
    """The managed keys as this replica last read them, by the key's digest."""

    def __init__(self) -> None:
        self.by_digest: dict[bytes, ManagedKey] = {}
        self.names: frozenset[str] = frozenset()
        self.version = -1
        self.probe: queries.VersionProbe | None = None  # set while ``watch`` runs

    async def load(self, db: Database) -> None:
        version = await queries.version(db)
        rows = await queries.all_keys(db)
        table: dict[bytes, ManagedKey] = {}
        for row in rows:
            try:
                principal = principal_of(row)
            except (ValidationError, TypeError) as exc:
                log.error("managed key %s is unusable: %s", row["name"], exc)
                continue
            digest = bytes.fromhex(row["key_sha256"])
            table[digest] = ManagedKey(digest, principal, row.get("expires_at"))
        self.by_digest = table
        self.names = frozenset(row["name"] for row in rows)
        self.version = version

    async def watch(self, db: Database) -> None:
        """Background: reload whenever the keys' version moves (read by ``probe``)."""
        self.probe = probe = queries.VersionProbe(db)
        failing = False
        try:
            while True:
                await asyncio.sleep(POLL_EVERY)
                try:
                    if await probe.read() != self.version:
                        await self.load(db)
                    failing = False
                except (SQLAlchemyError, OSError, queries.ProbeFailed) as exc:
                    if not failing:
                        log.warning("managed keys: cannot read the database: %s", exc)
                    failing = True
        finally:
            await probe.close()
