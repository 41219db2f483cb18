"""Budgets without Redis (issue 22): held in the process's memory, the spend written
to the database in batches off the request path — under 64 concurrent requests on
SQLite, across a restart, through a database outage, and shared by two replicas on
one PostgreSQL within the refresh interval."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmgw.budgets.local import REFRESH
from llmgw.store.background_writer import INTERVAL
from tests.conftest import CLIENT_KEY, GatewayFactory
from tests.fakes import FakeOpenAI
from tests.postgres_server import postgres_server
from tests.test_budgets import budget_config

ADMIN = {"Authorization": "Bearer admin-secret-1"}
# "hi" is estimated at 1 token: with max_tokens 11 the reservation (12 tokens, $0.012)
# is exactly what FakeOpenAI then reports (9 + 3 tokens), so admission is exact even
# while every request is in flight at once.
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 11}
COST = 0.012


async def _post(gw: Any, headers: dict[str, str] | None = None) -> int:
    response = await gw.post(
        "/v1/chat/completions",
        json=CHAT,
        headers={"Authorization": f"Bearer {CLIENT_KEY}", **(headers or {})},
    )
    body = await response.json()
    if response.status == 429:
        assert body["error"]["code"] == "budget_exceeded"
        assert body["error"]["type"] == "insufficient_quota"
        assert response.headers["x-should-retry"] == "false"
    return response.status


async def _entry(gw: Any, scope: str = "key:team-a") -> dict[str, Any]:
    report = await (await gw.get("/api/v1/budget", headers=ADMIN)).json()
    (entry,) = [b for b in report["budgets"] if b["scope"] == scope]
    return entry


def _errors(caplog: Any) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR or "database is locked" in r.getMessage()
    ]


async def test_64_concurrent_requests_on_sqlite_are_all_served_and_counted_exactly(
    gateway: GatewayFactory, fake: FakeOpenAI, caplog: Any, tmp_path: Path
) -> None:
    caplog.set_level(logging.INFO)
    text = budget_config(fake.url, tmp_path / "b.db", key_budget="{monthly_usd: 100}")
    gw = await gateway(text + "budgets:\n  global: {monthly_usd: 100}\n")
    assert await _post(gw) == 200  # both scopes read from the database once
    # Another writer holds the SQLite file while the 64 run: no request may wait on it
    # (the spend and the ledger rows are written once it lets go).
    holder = sqlite3.connect(tmp_path / "b.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        statuses = await asyncio.gather(*(_post(gw) for _ in range(64)))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert statuses == [200] * 64
    # Right after: the spend not yet written is reported too.
    assert (await _entry(gw))["spent_usd"] == pytest.approx(65 * COST)
    assert (await _entry(gw, "global"))["tokens"] == 65 * 12
    assert _errors(caplog) == []
    # And the database holds it all once written.
    for _ in range(100):  # bounded; the writer runs every quarter second
        with sqlite3.connect(tmp_path / "b.db") as db:
            rows = dict(db.execute("SELECT scope, spent_nano_usd FROM budget_spend").fetchall())
        if rows.get("key:team-a") == 65 * 12_000_000:
            break
        await asyncio.sleep(0.05)
    assert rows == {"key:team-a": 65 * 12_000_000, "global": 65 * 12_000_000}


async def test_concurrent_requests_stop_exactly_after_the_one_that_crosses(
    gateway: GatewayFactory, fake: FakeOpenAI, tmp_path: Path
) -> None:
    text = budget_config(fake.url, tmp_path / "b.db", key_budget="{monthly_usd: 0.1}")
    gw = await gateway(text)
    # All at once: 0.096 (8 requests) is under $0.10, so the 9th is served and crosses.
    statuses = await asyncio.gather(*(_post(gw) for _ in range(30)))
    assert statuses.count(200) == 9 and statuses.count(429) == 21
    assert len(fake.seen) == 9
    entry = await _entry(gw)
    assert entry["spent_usd"] == pytest.approx(9 * COST) and entry["remaining_usd"] == 0
    assert await _post(gw) == 429
    metrics = await (await gw.get("/metrics", headers=ADMIN)).text()
    assert 'llmgw_budget_rejections_total{scope="key"} 22.0' in metrics


async def test_the_spend_survives_a_restart(
    gateway: GatewayFactory, fake: FakeOpenAI, tmp_path: Path
) -> None:
    text = budget_config(fake.url, tmp_path / "b.db", key_budget="{monthly_usd: 0.05}")
    gw = await gateway(text)
    assert await asyncio.gather(*(_post(gw) for _ in range(3))) == [200, 200, 200]
    await gw.close()  # shutdown writes what is pending
    again = await gateway(text)
    assert (await _entry(again))["spent_usd"] == pytest.approx(3 * COST)
    assert [await _post(again) for _ in range(3)] == [200, 200, 429]  # 0.036, 0.048, spent


async def test_a_database_outage_keeps_serving_and_the_spend_is_written_after(
    gateway: GatewayFactory, fake: FakeOpenAI, caplog: Any, tmp_path: Path
) -> None:
    path = tmp_path / "b.db"
    gw = await gateway(budget_config(fake.url, path, key_budget="{monthly_usd: 0.1}"))
    assert await _post(gw) == 200  # the scope is in memory from here on
    for _ in range(100):  # bounded: written within a quarter second or so
        with sqlite3.connect(path) as db:
            written = db.execute("SELECT spent_nano_usd FROM budget_spend").fetchall()
        if written == [(12_000_000,)]:
            break
        await asyncio.sleep(0.05)
    assert written == [(12_000_000,)]
    with sqlite3.connect(path) as db:  # the table is gone: every write fails
        db.execute("ALTER TABLE budget_spend RENAME TO budget_spend_away")
    statuses = await asyncio.gather(*(_post(gw) for _ in range(12)))
    assert statuses.count(200) == 8 and statuses.count(429) == 4  # checked in memory
    for _ in range(100):
        if any("cannot write the spend" in m for m in _errors(caplog)):
            break
        await asyncio.sleep(0.05)
    assert any("cannot write the spend" in m for m in _errors(caplog))
    with sqlite3.connect(path) as db:  # back
        db.execute("ALTER TABLE budget_spend_away RENAME TO budget_spend")
    for _ in range(200):  # bounded: the writer backs off up to 5 s
        with sqlite3.connect(path) as db:
            written = db.execute("SELECT spent_nano_usd, tokens FROM budget_spend").fetchall()
        if written != [(12_000_000, 12)]:
            break
        await asyncio.sleep(0.05)
    assert written == [(9 * 12_000_000, 9 * 12)]
    assert (await _entry(gw))["spent_usd"] == pytest.approx(9 * COST)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


async def test_two_replicas_on_one_postgresql_refuse_once_the_shared_spend_is_spent(
    gateway: GatewayFactory, fake: FakeOpenAI, postgres_url: str, tmp_path: Path
) -> None:
    text = budget_config(fake.url, tmp_path / "unused.db", key_budget="{monthly_usd: 100}")
    text = text.replace(f'"sqlite:///{tmp_path / "unused.db"}"', f'"{postgres_url}"')
    text += "budgets:\n  per_budget_key: {monthly_usd: 0.1}\n"
    scope = {"x-budget-key": f"pg-{tmp_path.name}"}  # a budget of its own in the shared database
    a, b = await gateway(text), await gateway(text)
    assert await _post(b, scope) == 200  # b knows the scope: $0.012 spent
    # a spends the rest, alone and exactly once it has read b's spend.
    for _ in range(100):  # bounded: b's spend is written within a quarter second or so
        report = await (await a.get("/api/v1/budget", headers=ADMIN)).json()
        if any(e["scope"] == f"budget_key:{scope['x-budget-key']}" for e in report["budgets"]):
            break
        await asyncio.sleep(0.05)
    statuses = [await _post(a, scope) for _ in range(9)]
    assert statuses == [200] * 8 + [429]  # 0.012 + 8 x 0.012 = 0.108 crossed the limit
    # b reads a's spend from the database within the refresh interval (about 1 s, plus
    # the writer's quarter second): a generous wait, then b refuses too.
    await asyncio.sleep(3 * (REFRESH + INTERVAL))
    assert await _post(b, scope) == 429
    entry = await _entry(b, f"budget_key:{scope['x-budget-key']}")
    assert entry["spent_usd"] == pytest.approx(9 * COST)  # nothing overshot
