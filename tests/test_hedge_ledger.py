"""A hedged racer that lost after it had begun answering is billed by its provider: its
tokens and cost reach the usage ledger too (a row of its own, not a request), so the
ledger's reports agree with the in-memory usage and the budgets, before and after a
restart; and the migration that added that row's flag keeps an older database's rows."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection

from llmgw.store.engine import Database, resolve_url
from tests.conftest import CLIENT_KEY, GatewayFactory
from tests.fakes import FakeOpenAI, reply_stream
from tests.test_routing import two

Maker = Callable[[], Awaitable[FakeOpenAI]]
ADMIN = {"Authorization": "Bearer admin-secret-1"}
FIGURES = ("requests", "prompt_tokens", "completion_tokens", "cost_usd")


def _hedged_config(a: FakeOpenAI, b: FakeOpenAI, db: Path) -> str:
    return (
        two(a, b, extra="  hedge: {after: 100ms, max_extra: 1}")
        + f"""
models:
  chain: [a/m-a, b/m-b]
prices:
  m-a: {{input: 1000, output: 2000}}
  m-b: {{input: 3, output: 5}}
database: {{url: "sqlite:///{db}"}}
budgets:
  global: {{monthly_usd: 1000}}
auth:
  admin_key: admin-secret-1
  keys:
    - {{name: team-a, key: {CLIENT_KEY}, budget: {{monthly_usd: 100, monthly_tokens: 1000000}}}}
"""
    )


def _figures(entry: dict[str, Any]) -> dict[str, Any]:
    return {name: entry[name] for name in FIGURES}


async def _get(gw: Any, path: str) -> Any:
    response = await gw.get(path, headers=ADMIN)
    assert response.status == 200, await response.text()
    return await response.json()


async def _budget_spend(gw: Any) -> dict[str, tuple[int, float]]:
    report = await _get(gw, "/api/v1/budget")
    return {e["scope"]: (e["tokens"], e["spent_usd"]) for e in report["budgets"]}


async def test_a_losing_racers_spend_is_in_the_ledger_as_in_memory_and_budgets(
    gateway: GatewayFactory, make_fake: Maker, sdk: Any, tmp_path: Path
) -> None:
    a, b = await make_fake(), await make_fake()
    gate = asyncio.Event()  # a answers (status, headers, a first bytes), then says nothing
    a.default = reply_stream([b": hi\n\n", b"data: {}\n\n"], gate=gate)
    config = _hedged_config(a, b, tmp_path / "ledger.db")
    gw = await gateway(config)
    stream = await sdk(gw).chat.completions.create(
        model="chain",
        messages=[{"role": "user", "content": "Which of the two answers first?"}],
        stream=True,
        extra_headers={"x-budget-key": "user-7"},
        extra_body={"x-gateway": {"metadata": {"feature": "race"}}},
    )
    text_parts = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices]
    gate.set()
    assert "echo from m-b" in "".join(p for p in text_parts if p)

    memory = await _get(gw, "/api/v1/usage")
    assert memory["source"] == "memory"
    loser, winner = memory["providers"]["a"], memory["providers"]["b"]
    assert loser["requests"] == 0 and loser["prompt_tokens"] > 0 and loser["cost_usd"] > 0
    assert winner["requests"] == 1 and memory["total"]["requests"] == 1
    tokens = memory["total"]["prompt_tokens"] + memory["total"]["completion_tokens"]
    budgets = await _budget_spend(gw)
    assert budgets["key:team-a"][0] == budgets["global"][0] == tokens
    assert budgets["key:team-a"][1] == pytest.approx(memory["total"]["cost_usd"])

    async def ledger_agrees(gw: Any) -> None:
        by_provider = await _get(gw, "/api/v1/usage?group_by=provider")
        assert by_provider["source"] == "database"
        assert _figures(by_provider["total"]) == _figures(memory["total"])
        assert {g["provider"]: _figures(g) for g in by_provider["groups"]} == {
            name: _figures(t) for name, t in memory["providers"].items()
        }
        # Every other grouping: the racer's row is the request's (key, model, budget
        # key, endpoint, day, tags), so one group holds the request and all its spend.
        groups = "key,model,budget_key,endpoint,day,tag:feature"
        (one,) = (await _get(gw, f"/api/v1/usage?group_by={groups}"))["groups"]
        assert (one["key"], one["model"], one["budget_key"], one["tag:feature"]) == (
            "team-a",
            "chain",
            "user-7",
            "race",
        )
        assert _figures(one) == _figures(memory["total"])
        (request,) = (await _get(gw, "/api/v1/requests"))["data"]
        assert request["provider"] == "b" and request["status"] == 200
        assert request["hedge_losers"] == [
            {
                "provider": "a",
                "upstream_model": "m-a",
                "prompt_tokens": loser["prompt_tokens"],
                "completion_tokens": loser["completion_tokens"],
                "cost_usd": loser["cost_usd"],
            }
        ]
        assert request["cost_usd"] == winner["cost_usd"]

    await ledger_agrees(gw)
    await gw.close()  # a restart: the ledger and the budgets read back the same
    again = await gateway(config)
    await ledger_agrees(again)
    assert await _budget_spend(again) == budgets


def _migrate(connection: Connection, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", "llmgw.store:migrations")
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def upgraded_keeps_its_rows(gateway: GatewayFactory, url: str, config_url: str) -> None:
    """A database at the first schema with one request's row, then the gateway started
    on it: the schema at head, the row kept and still counted as a request."""
    old = Database(url)
    async with old.engine.begin() as conn:
        await conn.run_sync(functools.partial(_migrate, revision="0001"))
        await conn.execute(
            text(
                "INSERT INTO requests (request_id, ts, day, key, model, provider, status, "
                "prompt_tokens, completion_tokens, cost_nano_usd, latency_ms) VALUES "
                "('old-1', 1700000000, '2023-11-14', 'team-a', 'gpt-4o-mini', 'up', 200, "
                "11, 7, 250000, 12.5)"
            )
        )
    await old.close()
    gw = await gateway(
        f'providers:\n  demo: {{type: mock}}\ndatabase: {{url: "{config_url}"}}\n'
        "auth: {admin_key: admin-secret-1}\n"
    )
    usage = await _get(gw, "/api/v1/usage?group_by=key,provider")
    assert usage["groups"] == [
        {
            "key": "team-a",
            "provider": "up",
            "requests": 1,
            "prompt_tokens": 11,
            "completion_tokens": 7,
            "cost_usd": 0.00025,
        }
    ]
    (row,) = (await _get(gw, "/api/v1/requests"))["data"]
    assert row["request_id"] == "old-1" and row["hedge_losers"] == []
    await gw.close()
    db = Database(url)
    async with db.engine.connect() as conn:
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
        flags = (await conn.execute(text("SELECT hedge_loser FROM requests"))).all()
    await db.close()
    assert [tuple(v) for v in version] == [("0002",)]
    assert [bool(flag) for (flag,) in flags] == [False]


async def test_an_older_sqlite_ledger_is_upgraded_with_its_rows_kept(
    gateway: GatewayFactory, tmp_path: Path
) -> None:
    config_url = f"sqlite:///{tmp_path / 'old.db'}"
    await upgraded_keeps_its_rows(gateway, resolve_url(config_url, "."), config_url)
