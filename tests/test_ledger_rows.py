"""The ledger's rows are tuples in column order, written by the driver's own
executemany: what is stored must be exactly what SQLAlchemy's ``insert(requests)``
stores for the same values (types, SQL NULLs, the JSON ``tags`` with ``None`` as the
JSON text ``null``, the ``hedge_loser`` flag, ``attempts``), so readers see the same rows. Checked
here on SQLite; tests/test_store_postgres.py runs the same check on PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, text

from llmgw.core import RequestContext
from llmgw.observe.metrics import Metrics
from llmgw.store.engine import Database, resolve_url
from llmgw.store.ledger import COLUMNS, Ledger, insert_sql
from llmgw.store.tables import requests


def _contexts() -> list[RequestContext]:
    started = time.perf_counter()
    full = RequestContext(
        "req-1", started, endpoint="chat", key="team-a", budget_key="team-a-budget",
        model="fast", provider="b", upstream_model="b-m", status=200, cache="MISS",
        prompt_tokens=9, completion_tokens=3, cost_usd=0.0000031,
    )  # fmt: skip
    full.tags = {"team": "search", "who": 'Zoë "q"'}
    full.attempts = 2
    never = RequestContext("req-1", started, provider="c")  # no upstream model: not charged
    loser = RequestContext(
        "req-1", started, provider="a", upstream_model="a-m", prompt_tokens=5,
        completion_tokens=5, cost_usd=0.005,
    )  # fmt: skip
    full.hedge_losers = (never, loser)
    bare = RequestContext("req-2", started, endpoint="messages", status=502, error="upstream")
    bare.tags = {}  # empty: as none
    return [full, bare]


# What SQLAlchemy's insert stored for those requests before rows became tuples
# (``ts`` and ``day`` are taken from the ledger's own rows).
_EXPECTED: list[dict[str, Any]] = [
    {
        "request_id": "req-1", "key": "team-a", "budget_key": "team-a-budget",
        "model": "fast", "provider": "b", "upstream_model": "b-m", "endpoint": "chat",
        "status": 200, "cache": "MISS", "prompt_tokens": 9, "completion_tokens": 3,
        "cost_nano_usd": 3100, "latency_ms": 12.35, "error": None,
        "tags": {"team": "search", "who": "Zoë \"q\""}, "hedge_loser": False, "attempts": 2,
    },
    {
        "request_id": "req-1", "key": "team-a", "budget_key": "team-a-budget",
        "model": "fast", "provider": "a", "upstream_model": "a-m", "endpoint": "chat",
        "status": 200, "cache": None, "prompt_tokens": 5, "completion_tokens": 5,
        "cost_nano_usd": 5_000_000, "latency_ms": 12.35, "error": None,
        "tags": {"team": "search", "who": "Zoë \"q\""}, "hedge_loser": True, "attempts": None,
    },
    {
        "request_id": "req-2", "key": "anonymous", "budget_key": None, "model": None,
        "provider": None, "upstream_model": None, "endpoint": "messages", "status": 502,
        "cache": None, "prompt_tokens": 0, "completion_tokens": 0, "cost_nano_usd": None,
        "latency_ms": 500.0, "error": "upstream", "tags": None, "hedge_loser": False,
        "attempts": 0,
    },
]  # fmt: skip


def _stored_sql(dialect: str) -> str:
    """Every row, each column as text that tells its stored type and NULL apart."""
    if dialect == "sqlite":  # quote(): 'text', 12 vs 12.0, NULL
        shown = " || '|' || ".join(f"quote({name})" for name in COLUMNS)
    else:  # the columns are typed; a SQL NULL (even the JSON column's) shows as <NULL>
        shown = " || '|' || ".join(f"coalesce({name}::text, '<NULL>')" for name in COLUMNS)
    return f"SELECT {shown} FROM requests ORDER BY id"


async def written_as_sqlalchemy_writes(ours_url: str, reference_url: str) -> None:
    """The ledger writes the requests into ``ours_url``; SQLAlchemy's insert writes the
    expected values into ``reference_url``: both store the very same rows."""
    ours, reference = Database(ours_url), Database(reference_url)
    await ours.start()
    await reference.start()
    try:
        ledger = Ledger(ours, Metrics(), bound=100)
        full, bare = _contexts()
        ledger.add(full, 0.012345)
        ledger.add(bare, 0.5)
        assert (ledger.pending, ledger.dropped) == (3, 0)
        assert await ledger.flush()
        async with ours.engine.connect() as conn:
            when = (await conn.execute(text("SELECT ts, day FROM requests ORDER BY id"))).all()
            stored = (await conn.execute(text(_stored_sql(ours.dialect)))).scalars().all()
        assert len(when) == 3 and when[0] == when[1]  # a racer's row: the request's time
        expected = [
            row | {"ts": ts, "day": day} for row, (ts, day) in zip(_EXPECTED, when, strict=True)
        ]
        async with reference.engine.begin() as conn:
            await conn.execute(insert(requests), expected)
        async with reference.engine.connect() as conn:
            assert (await conn.execute(text(_stored_sql(ours.dialect)))).scalars().all() == stored
    finally:
        await ours.close()
        await reference.close()


async def test_the_ledgers_rows_are_stored_as_sqlalchemys_insert_stores_them_sqlite(
    tmp_path: Path,
) -> None:
    await written_as_sqlalchemy_writes(
        resolve_url("sqlite:///ours.db", str(tmp_path)),
        resolve_url("sqlite:///reference.db", str(tmp_path)),
    )


def test_the_row_columns_are_the_tables_columns() -> None:
    # Every column but the id is written, in the order the tuples hold them.
    assert set(COLUMNS) == {column.name for column in requests.columns} - {"id"}
    assert len(COLUMNS) == len(set(COLUMNS))


def test_an_unknown_parameter_style_is_refused_not_guessed() -> None:
    assert insert_sql("qmark").endswith(", ?)") and insert_sql("numeric_dollar").endswith("$19)")
    with pytest.raises(ValueError, match="pyformat"):
        insert_sql("pyformat")


async def held_while_refused_then_written_once(url: str) -> None:
    """The database refuses the batch (its table gone): the driver's error is a refusal
    (rows held, False), not an exception; once it is back the rows are written once."""
    db = Database(url)
    await db.start()
    try:
        ledger = Ledger(db, Metrics(), bound=10)
        async with db.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE requests RENAME TO requests_away"))
        for request_id in ("req-a", "req-b"):
            ledger.add(RequestContext(request_id, time.perf_counter(), endpoint="chat"), 0.01)
        for _ in range(2):  # refused again: still held, nothing taken out
            assert not await ledger.flush()
            assert (ledger.pending, ledger.written, ledger.dropped) == (2, 0, 0)
        async with db.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE requests_away RENAME TO requests"))
        assert await ledger.flush()
        assert (ledger.pending, ledger.written) == (0, 2)
        async with db.engine.connect() as conn:
            ids = (await conn.execute(text("SELECT request_id FROM requests"))).scalars()
            assert sorted(ids) == ["req-a", "req-b"]
    finally:
        await db.close()


async def test_rows_held_while_the_database_refuses_are_written_once_it_is_back(
    tmp_path: Path,
) -> None:
    await held_while_refused_then_written_once(resolve_url("sqlite:///l.db", str(tmp_path)))
