"""Budget spend written off the request path: summed deltas per (period, scope).

``add`` is called when a request settles and only adds its cost and tokens to the
pending delta of each of its scopes (no I/O). A background task writes every pending
delta every quarter second in one transaction (``spent += delta``, ``tokens +=
delta``, ``store/budgets.add_spend``). While the database cannot be written the deltas
are kept (and new ones summed into them) and the write is retried, backing off up to
5 s. The deltas of at most ``bound`` (period, scope) pairs are held: the spend of a
new pair beyond that is dropped, counted in ``llmgw_budget_spend_dropped_total`` and
logged. ``close`` (at shutdown, SIGTERM included) writes everything pending.

One database visit at a time: the writer, the reads of ``budgets/local.py`` (a
scope's first use, the once-a-second refresh) and a budget report take turns
(``quiet``), so a read never races a write whose deltas are both in flight and
(maybe) already committed. ``after_write`` runs in the writer's turn, after each
write that succeeded (the refresh of the spend other replicas wrote).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from sqlalchemy.exc import SQLAlchemyError

from llmgw.observe.metrics import Metrics
from llmgw.store import budgets as queries
from llmgw.store.background_writer import BackgroundWriter
from llmgw.store.engine import Database

log = logging.getLogger("llmgw.budgets")
Key = tuple[str, str]  # (period, scope)
DB_ERRORS = (SQLAlchemyError, OSError)


class SpendWriter(BackgroundWriter):
    def __init__(
        self,
        db: Database,
        metrics: Metrics,
        bound: int,
        written: Callable[[dict[Key, tuple[int, int]]], None],
        after_write: Callable[[], Awaitable[None]],
    ) -> None:
        self.db = db
        self.metrics = metrics
        self.bound = bound
        self.dropped = 0
        self._written = written  # told of every batch committed, in the same turn
        self._after_write = after_write
        self._pending: dict[Key, tuple[int, int]] = {}
        self._writing: dict[Key, tuple[int, int]] = {}  # the batch in flight
        super().__init__()
        self._turn = asyncio.Lock()

    def add(self, key: Key, nano: int, tokens: int) -> None:
        held = self._pending.get(key)
        if held is None:
            if not nano and not tokens:
                return
            if len(self._pending) >= self.bound:
                self._refuse_one(
                    self.metrics.budget_spend_dropped,
                    log,
                    "budgets: %d scopes wait to be written; the spend of %s is dropped "
                    "(%d dropped so far)",
                    key[1],
                )
                return
            self._pending[key] = (nano, tokens)
        else:
            self._pending[key] = (held[0] + nano, held[1] + tokens)

    def unflushed(self, key: Key) -> tuple[int, int]:
        """What this process spent in ``key`` that the database does not hold yet."""
        pending = self._pending.get(key, (0, 0))
        writing = self._writing.get(key, (0, 0))
        return pending[0] + writing[0], pending[1] + writing[1]

    def unflushed_of(self, period: str) -> dict[Key, tuple[int, int]]:
        """Every scope of ``period`` with spend the database does not hold yet."""
        keys = {key for key in (*self._pending, *self._writing) if key[0] == period}
        return {key: self.unflushed(key) for key in keys}

    @contextlib.asynccontextmanager
    async def quiet(self) -> AsyncIterator[None]:
        """No write in flight while this is held."""
        async with self._turn:
            yield

    async def _cycle(self) -> bool:
        async with self._turn:
            wrote = await self._write()
            if wrote:
                await self._after_write()
        return wrote

    async def flush(self) -> bool:
        """Write everything pending now; False when the database refused (kept).
        Shielded: a caller that goes away does not stop a write between its commit
        and its bookkeeping."""
        return await asyncio.shield(self._flush())

    async def _flush(self) -> bool:
        async with self._turn:
            return await self._write()

    async def _write(self) -> bool:
        if not self._pending:
            return True
        batch, self._pending = self._pending, {}
        self._writing = batch
        try:
            await queries.add_spend(self.db, batch)
        except DB_ERRORS as exc:
            for key, (nano, tokens) in batch.items():  # back in front, summed with newer
                held = self._pending.get(key, (0, 0))
                self._pending[key] = (held[0] + nano, held[1] + tokens)
            if not self._failing:
                log.error(
                    "budgets: cannot write the spend to the database (%s); %d scopes held, "
                    "retrying",
                    str(exc).splitlines()[0],
                    len(self._pending),
                )
            self._failing = True
            return False
        finally:
            self._writing = {}
        self._written(batch)
        if self._failing:
            log.warning("budgets: the database is back; the held spend is written")
            self._failing = False
        return True

    def _held(self) -> int:
        return len(self._pending)

    def _drop_held(self, count: int) -> None:
        log.error("budgets: the spend of %d scopes could not be written before exit", count)
        self.metrics.budget_spend_dropped.inc(count)
        self._pending.clear()
