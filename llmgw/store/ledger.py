"""The usage ledger: one row per client request, written in batches off the hot path.

A hedged request whose racers lost after they had begun answering (``hedge.charged``)
has one more row per such racer, flagged ``hedge_loser``: the tokens and cost its
provider bills, under the request's id, time, key, budget key, model, endpoint, status
and tags, with the racer's own provider and upstream model. Reports count those rows'
tokens and cost, never as requests.

``add`` is called by accounting once per ended request (already batched per loop
turn) and only appends a row to a bounded buffer. A background task writes the
buffer in one ``INSERT`` per batch every quarter second, or sooner once a batch is
full. Rows are tuples in column order, handed as they are to the driver's own
executemany (``exec_driver_sql``): SQLAlchemy's per-row parameter processing was more
than half of a row's cost; the stored values are the same as its ``insert`` stores.
While the database cannot be written the rows stay in the buffer and the write is
retried (backing off up to 5 s); rows are taken out only once written, so none is
lost to a failed attempt. One write at a time: the background task, a usage report
(which writes what is held before it reads) and ``close`` take turns, so no two take
the same rows and none is written twice; a write whose caller goes away (a report's
client disconnects) still ends, so rows written are never kept to be written again.
When the buffer is full (``database.buffer`` rows) new rows
are dropped, counted in ``llmgw_ledger_dropped_total`` and logged. ``close`` (at
shutdown, SIGTERM included) writes everything still held.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from llmgw.core import ANONYMOUS_LABEL, RequestContext
from llmgw.hedge import charged
from llmgw.observe.metrics import Metrics
from llmgw.store.background_writer import BackgroundWriter
from llmgw.store.engine import Database

log = logging.getLogger(__name__)
BATCH = 500  # rows per INSERT


def utc_day(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


# A row is a tuple in this column order (no dict per request), written as it is by
# the driver's own executemany: no per-row parameter processing on the way.
COLUMNS = (
    "request_id", "ts", "day", "key", "budget_key", "model", "provider", "upstream_model",
    "endpoint", "status", "cache", "prompt_tokens", "completion_tokens", "cost_nano_usd",
    "latency_ms", "error", "tags", "hedge_loser", "attempts",
)  # fmt: skip
Row = tuple[Any, ...]
# The JSON ``tags`` column as SQLAlchemy's JSON type stores it (``json.dumps``, and
# ``None`` as the JSON text ``null``, not SQL NULL), so readers see the same rows.
_NO_TAGS = "null"


def insert_sql(paramstyle: str) -> str:
    """The INSERT of a row, in the driver's parameter style (qmark for sqlite3,
    numeric_dollar for asyncpg)."""
    if paramstyle == "numeric_dollar":
        marks = ", ".join(f"${i}" for i in range(1, len(COLUMNS) + 1))
    elif paramstyle == "qmark":
        marks = ", ".join("?" * len(COLUMNS))
    else:  # ``Database`` opens SQLite through aiosqlite or PostgreSQL through asyncpg
        raise ValueError(f"usage ledger: no INSERT for the parameter style {paramstyle!r}")
    return f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({marks})"


def ledger_row(ctx: RequestContext, latency: float, now: float, day: str) -> Row:
    """``ctx``'s row; ``day`` is ``utc_day(now)`` (the ledger keeps it from row to row)."""
    cost = None if ctx.cost_usd is None else round(ctx.cost_usd * 1_000_000_000)
    tags = ctx.tags
    return (
        ctx.request_id,
        now,
        day,
        ctx.key or ANONYMOUS_LABEL,
        ctx.budget_key,
        ctx.model,
        ctx.provider,
        ctx.upstream_model,
        ctx.endpoint,
        ctx.status,
        ctx.cache,
        ctx.prompt_tokens or 0,
        ctx.completion_tokens or 0,
        cost,
        round(latency * 1000, 2),
        ctx.error,
        json.dumps(dict(tags)) if tags else _NO_TAGS,
        False,
        ctx.attempts,
    )


def loser_row(request_row: Row, loser: RequestContext) -> Row:
    """The row of a racer of the request whose row is ``request_row``: its spend (usage
    has filled in its tokens and cost), the rest the request's."""
    cost = None if loser.cost_usd is None else round(loser.cost_usd * 1_000_000_000)
    # request_id .. budget_key, model; endpoint, status; latency_ms; tags: the request's.
    return (
        *request_row[:6],
        loser.provider,
        loser.upstream_model,
        request_row[8],
        request_row[9],
        None,  # cache
        loser.prompt_tokens or 0,
        loser.completion_tokens or 0,
        cost,
        request_row[14],
        None,  # error
        request_row[16],
        True,
        None,  # attempts: a racer is not a request
    )


class Ledger(BackgroundWriter):
    def __init__(self, db: Database, metrics: Metrics, bound: int) -> None:
        self.db = db
        self.metrics = metrics
        self.bound = bound
        self.written = 0
        self.dropped = 0
        self._rows: deque[Row] = deque()
        super().__init__()
        self._writing = asyncio.Lock()
        self._day: tuple[int, str] = (-1, "")  # (unix day, its date): one strftime a day
        self._insert = insert_sql(db.engine.dialect.paramstyle)

    def add(self, ctx: RequestContext, latency: float) -> None:
        """Queue ``ctx``'s row, and its charged hedge racers' (client API requests only)."""
        if ctx.endpoint is None:
            return
        if len(self._rows) >= self.bound:
            self._refuse(ctx)
            return
        now = time.time()
        number = int(now // 86400)
        if number != self._day[0]:
            self._day = (number, utc_day(now))
        row = ledger_row(ctx, latency, now, self._day[1])
        self._rows.append(row)
        if ctx.hedge_losers:
            for loser in charged(ctx):
                if len(self._rows) >= self.bound:
                    self._refuse(ctx)
                else:
                    self._rows.append(loser_row(row, loser))
        if len(self._rows) >= BATCH:
            self._wake.set()

    def _refuse(self, ctx: RequestContext) -> None:
        """A row of ``ctx``'s not held, the buffer being full: dropped, counted, logged."""
        self._refuse_one(
            self.metrics.ledger_dropped,
            log,
            "usage ledger buffer full (%d rows): a row of request %s not recorded "
            "(%d dropped so far)",
            ctx.request_id,
        )

    @property
    def pending(self) -> int:
        return len(self._rows)

    async def flush(self) -> bool:
        """Write every held row; False when the database refused (rows kept).

        Shielded: a caller cancelled mid-write (its client gone) does not stop the
        write between the commit and taking the written rows out of the buffer."""
        if not self._rows:  # rows leave the buffer once written: nothing is held
            return True
        return await asyncio.shield(self._write_held())

    async def _write_held(self) -> bool:
        async with self._writing:  # the rows at the head are this writer's alone
            return await self._write_batches()

    async def _write_batches(self) -> bool:
        while self._rows:
            batch = list(islice(self._rows, BATCH))
            try:
                async with self.db.engine.begin() as conn:
                    await conn.exec_driver_sql(self._insert, batch)
            except (SQLAlchemyError, OSError) as exc:
                if not self._failing:
                    log.warning(
                        "usage ledger: cannot write to the database (%s); %d rows held, retrying",
                        str(exc).splitlines()[0],
                        len(self._rows),
                    )
                self._failing = True
                return False
            for _ in batch:
                self._rows.popleft()
            self.written += len(batch)
            if self._failing:
                log.info("usage ledger: the database is back; writing held rows")
                self._failing = False
        return True

    def _held(self) -> int:
        return len(self._rows)

    def _drop_held(self, count: int) -> None:
        self.dropped += count
        self.metrics.ledger_dropped.inc(count)
        log.error("usage ledger: %d rows could not be written before exit", count)
        self._rows.clear()
