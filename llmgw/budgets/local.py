"""Budgets held in this process's memory over the database (the memory limits backend).

Per (month, scope) the process keeps what the database holds (``spent``, ``tokens``)
and its own reservations; what it spent but has not written yet is in the writer
(``store/budget_writer.py``). So a scope's view is

    database spend (every replica's, as last read) + own unflushed spend + own reservations

and admission (``reserve``) and settlement (``settle``) touch memory only: no database
round trip is on a request's path. A scope's month is read from the database the
first time this process uses it (one ``SELECT``; concurrent first requests wait on
the same read). A database that cannot be read admits unchecked, loudly, and is not
asked again for a second (the spend is still recorded). After each write, about once
a second, the spend of every scope in use is read again (one ``SELECT``), which brings
in what other replicas sharing the database (PostgreSQL, without Redis) wrote.

Across replicas without Redis a budget is therefore checked against a view up to
about 1.25 s old (the writer's quarter second plus the refresh's second): replicas
overshoot a budget by at most what the others spend in that time, plus the requests
in flight whose estimate fell short. Within one process the check is exact: the
request that crosses is served, the next is refused. With Redis (``budgets/redis.py``)
replicas are exact.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from llmgw.observe.metrics import Metrics
from llmgw.store import budgets as queries
from llmgw.store.budget_writer import DB_ERRORS, Key, SpendWriter
from llmgw.store.engine import Database

log = logging.getLogger("llmgw.budgets")
REFRESH = 1.0  # seconds between reads of the spend of the scopes in use
IDLE = 600.0  # seconds a scope unused (and without reservations) is kept in memory
SEED_WAIT = 5.0  # seconds admission waits for a scope's first read
REST = 1.0  # seconds the database is left alone after a read failed


@dataclass(slots=True)
class State:
    spent: int = 0  # nano-USD the database holds (as last read, plus what was written since)
    tokens: int = 0
    reserved: int = 0  # this process's reservations
    rtokens: int = 0
    used_at: float = 0.0


class LocalBudgets:
    def __init__(self, db: Database, metrics: Metrics, bound: int) -> None:
        self.db = db
        self.writer = SpendWriter(db, metrics, bound, self._wrote, self._refresh_due)
        self._states: dict[Key, State] = {}
        self._seeding: dict[Key, asyncio.Task[None]] = {}
        self._rest_until = 0.0
        self._refreshed = 0.0
        self._warned = False

    async def ready(self, period: str, asks: Sequence[queries.Ask]) -> bool:
        """Every scope's month in memory; False when the database cannot be read."""
        states = self._states
        for ask in asks:
            if (period, ask.scope) not in states:
                break
        else:
            return True
        missing = [(period, a.scope) for a in asks if (period, a.scope) not in states]
        if time.monotonic() < self._rest_until:
            return False
        tasks = []
        for key in missing:
            task = self._seeding.get(key)
            if task is None:
                task = asyncio.get_running_loop().create_task(self._seed(key))
                self._seeding[key] = task
                task.add_done_callback(self._seeded)
            tasks.append(task)
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.gather(*tasks)), SEED_WAIT)
        except (TimeoutError, *DB_ERRORS) as exc:
            self._rest_until = time.monotonic() + REST
            log.error(
                "budgets: cannot read this month's spend (%s); request admitted unchecked",
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )
            return False
        return True

    def _seeded(self, task: asyncio.Task[None]) -> None:
        for key, running in list(self._seeding.items()):
            if running is task:
                del self._seeding[key]
        if not task.cancelled():
            task.exception()  # retrieved: the waiters were told

    async def _seed(self, key: Key) -> None:
        async with self.writer.quiet():  # no write in flight: the unflushed spend is not in it
            if key in self._states:
                return
            found = await queries.spent(self.db, [key])
            spent, tokens = found.get(key, (0, 0))
            self._states[key] = State(spent, tokens, used_at=time.monotonic())

    def reserve(self, period: str, asks: Sequence[queries.Ask]) -> int | None:
        """Reserve in every scope, or in none: the index of the spent scope, or -1;
        None when a scope's month is not in memory (``ready`` brings it)."""
        states = []
        held = self._states
        for ask in asks:
            state = held.get((period, ask.scope))
            if state is None:
                return None
            states.append(state)
        for index, (ask, state) in enumerate(zip(asks, states, strict=True)):
            nano, tokens = self.writer.unflushed((period, ask.scope))
            if ask.usd_nano is not None and state.spent + nano + state.reserved >= ask.usd_nano:
                return index
            if ask.tokens is not None and state.tokens + tokens + state.rtokens >= ask.tokens:
                return index
        now = time.monotonic()
        for ask, state in zip(asks, states, strict=True):
            state.reserved += ask.reserve_nano
            state.rtokens += ask.reserve_tokens
            state.used_at = now
        return -1

    def settle(
        self, period: str, asks: Sequence[queries.Ask], reserved: bool, cost: int, tokens: int
    ) -> dict[str, tuple[int, int]]:
        """Replace the reservations (when ``reserved``) by what was spent; each scope
        held in memory's (spent, tokens) after."""
        after: dict[str, tuple[int, int]] = {}
        for ask in asks:
            key = (period, ask.scope)
            self.writer.add(key, cost, tokens)
            state = self._states.get(key)
            if state is None:
                continue
            if reserved:
                state.reserved -= ask.reserve_nano
                state.rtokens -= ask.reserve_tokens
            after[ask.scope] = self.total(key)
        return after

    def total(self, key: Key) -> tuple[int, int]:
        """(spent, tokens) of ``key`` as this process knows it, unflushed included."""
        state = self._states.get(key)
        nano, tokens = self.writer.unflushed(key)
        if state is not None:
            nano, tokens = nano + state.spent, tokens + state.tokens
        return nano, tokens

    async def report(self, keys: Sequence[Key] | None, period: str) -> dict[str, tuple[int, int]]:
        """The database's spend plus this process's unflushed spend, per scope of
        ``period`` (every scope when ``keys`` is None), read in the writer's turn."""
        await self.writer.flush()  # most of it written; what the database refused is added
        async with self.writer.quiet():
            if keys is None:
                rows = await queries.spend(self.db, period)
                held = {(period, r.scope): (int(r.spent_nano_usd), int(r.tokens)) for r in rows}
            else:
                held = await queries.spent(self.db, keys)
            unflushed = self.writer.unflushed_of(period)
        for key, (nano, tokens) in unflushed.items():
            base = held.get(key, (0, 0))
            held[key] = (base[0] + nano, base[1] + tokens)
        return {scope: pair for (_, scope), pair in held.items()}

    def _wrote(self, batch: dict[Key, tuple[int, int]]) -> None:
        for key, (nano, tokens) in batch.items():
            state = self._states.get(key)
            if state is not None:
                state.spent += nano
                state.tokens += tokens

    async def _refresh_due(self) -> None:
        """In the writer's turn, after a write: about once a second, the database's
        spend of every scope in use (other replicas' included); idle scopes forgotten."""
        now = time.monotonic()
        if now - self._refreshed < REFRESH:
            return
        self._refreshed = now
        for key, state in list(self._states.items()):
            idle = now - state.used_at > IDLE
            if idle and not state.reserved and not state.rtokens:
                del self._states[key]
        if not self._states:
            return
        try:
            found = await queries.spent(self.db, list(self._states))
        except DB_ERRORS as exc:
            if not self._warned:
                log.error("budgets: cannot read the spend of the scopes in use (%s)", exc)
                self._warned = True
            return
        self._warned = False
        for key, state in self._states.items():
            state.spent, state.tokens = found.get(key, (state.spent, state.tokens))
