"""A hedged racer that lost after it had begun answering is billed by its provider: its
tokens and cost reach the usage ledger too (a row of its own, not a request), so the
ledger's reports agree with the in-memory usage and the budgets, before and after a
restart; and the migration that added that row's flag keeps an older database's rows."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection

from llmgw.core import RequestContext
from llmgw.observe.metrics import Metrics
from llmgw.store.engine import Database, resolve_url
from llmgw.store.ledger import COLUMNS, Ledger
from tests.conftest import CLIENT_KEY, GatewayFactory
from tests.fakes import FakeOpenAI, stall_after
from tests.provider_fakes import anthropic_client
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


async def _memory_and_budgets(gw: Any) -> tuple[dict[str, Any], dict[str, tuple[int, float]]]:
    """The in-memory usage after one hedged request whose racer ``a`` lost after it had
    begun answering, and the budgets' spend, checked to agree with each other."""
    memory = await _get(gw, "/api/v1/usage")
    assert memory["source"] == "memory"
    loser, winner = memory["providers"]["a"], memory["providers"]["b"]
    assert loser["requests"] == 0 and loser["prompt_tokens"] > 0 and loser["cost_usd"] > 0
    assert winner["requests"] == 1 and memory["total"]["requests"] == 1
    tokens = memory["total"]["prompt_tokens"] + memory["total"]["completion_tokens"]
    budgets = await _budget_spend(gw)
    assert budgets["key:team-a"][0] == budgets["global"][0] == tokens
    assert budgets["key:team-a"][1] == pytest.approx(memory["total"]["cost_usd"])
    return memory, budgets


async def _ledger_agrees(gw: Any, memory: dict[str, Any], endpoint: str) -> None:
    """The ledger's reports of that request: the same figures as the in-memory usage."""
    by_provider = await _get(gw, "/api/v1/usage?group_by=provider")
    assert by_provider["source"] == "database"
    assert _figures(by_provider["total"]) == _figures(memory["total"])
    assert {g["provider"]: _figures(g) for g in by_provider["groups"]} == {
        name: _figures(t) for name, t in memory["providers"].items()
    }
    # Every other grouping: the racer's row is the request's (key, model, budget key,
    # endpoint, day, tags), so one group holds the request and all its spend.
    groups = "key,model,budget_key,endpoint,day,tag:feature"
    (one,) = (await _get(gw, f"/api/v1/usage?group_by={groups}"))["groups"]
    assert (one["key"], one["model"], one["budget_key"], one["endpoint"]) == (
        "team-a",
        "chain",
        "user-7",
        endpoint,
    )
    assert one["tag:feature"] == "race" and _figures(one) == _figures(memory["total"])
    (request,) = (await _get(gw, "/api/v1/requests"))["data"]
    assert request["provider"] == "b" and request["status"] == 200
    loser = memory["providers"]["a"]
    assert request["hedge_losers"] == [
        {
            "provider": "a",
            "upstream_model": "m-a",
            "prompt_tokens": loser["prompt_tokens"],
            "completion_tokens": loser["completion_tokens"],
            "cost_usd": loser["cost_usd"],
        }
    ]
    assert request["cost_usd"] == memory["providers"]["b"]["cost_usd"]


async def test_a_losing_racers_spend_is_in_the_ledger_as_in_memory_and_budgets(
    gateway: GatewayFactory, make_fake: Maker, sdk: Any, tmp_path: Path
) -> None:
    a, b = await make_fake(), await make_fake()
    gate = stall_after(a, b"data: {}\n\n")  # a answers (status, headers, first bytes)
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
    memory, budgets = await _memory_and_budgets(gw)
    await _ledger_agrees(gw, memory, "chat")
    await gw.close()  # a restart: the ledger and the budgets read back the same
    again = await gateway(config)
    await _ledger_agrees(again, memory, "chat")
    assert await _budget_spend(again) == budgets


async def test_a_losing_racers_spend_is_in_the_ledger_from_the_anthropic_sdk(
    gateway: GatewayFactory, make_fake: Maker, tmp_path: Path
) -> None:
    a, b = await make_fake(), await make_fake()
    gate = stall_after(a, b": still here\n\n")  # a answers (status, headers, comments)
    gw = await gateway(_hedged_config(a, b, tmp_path / "messages.db"))
    await won_by_b_over_messages(
        gw,
        gate,
        extra_headers={"x-budget-key": "user-7"},
        extra_body={"x-gateway": {"metadata": {"feature": "race"}}},
    )
    memory, _ = await _memory_and_budgets(gw)
    await _ledger_agrees(gw, memory, "messages")


async def won_by_b_over_messages(gw: Any, gate: asyncio.Event, **extra: Any) -> None:
    """The hedged ``chain`` asked over the Anthropic SDK's stream (``extra``: its extra
    headers or body); b's answer arrives whole, then the stalled racer a is let go."""
    async with (
        anthropic_client(gw) as client,
        client.messages.stream(
            model="chain",
            max_tokens=64,
            messages=[{"role": "user", "content": "Which of the two answers first?"}],
            **extra,
        ) as stream,
    ):
        answer = await stream.get_final_message()
    gate.set()
    assert answer.content[0].type == "text" and "echo from m-b" in answer.content[0].text


def _migrate(connection: Connection, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", "llmgw.store:migrations")
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def upgraded_keeps_its_rows(gateway: GatewayFactory, url: str, config_url: str) -> None:
    """A database at the first schema with one request's row, then the gateway started
    on it: the schema at head, the row kept, still counted as a request, its attempts
    unknown."""
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
    assert row["attempts"] is None  # written before the column (0003): unknown, no guess
    await gw.close()
    db = Database(url)
    async with db.engine.connect() as conn:
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
        flags = (await conn.execute(text("SELECT hedge_loser FROM requests"))).all()
    await db.close()
    assert [tuple(v) for v in version] == [("0003",)]
    assert [bool(flag) for (flag,) in flags] == [False]


async def test_an_older_sqlite_ledger_is_upgraded_with_its_rows_kept(
    gateway: GatewayFactory, tmp_path: Path
) -> None:
    config_url = f"sqlite:///{tmp_path / 'old.db'}"
    await upgraded_keeps_its_rows(gateway, resolve_url(config_url, "."), config_url)


class _Recorder:
    """A database that keeps the rows written to it."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.engine = self
        self.dialect = SimpleNamespace(paramstyle="qmark")

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[_Recorder]:
        yield self

    async def exec_driver_sql(self, _sql: str, rows: list[tuple[Any, ...]]) -> None:
        self.rows.extend(dict(zip(COLUMNS, row, strict=True)) for row in rows)


async def test_a_full_ledger_buffer_drops_and_counts_racers_rows_too() -> None:
    db = _Recorder()
    ledger = Ledger(cast(Database, db), Metrics(), bound=2)
    started = time.perf_counter()

    def racer(provider: str | None, tokens: int) -> RequestContext:
        return RequestContext(
            "req-1", started, provider=provider, upstream_model=provider and f"{provider}-m",
            prompt_tokens=tokens, completion_tokens=tokens, cost_usd=tokens / 1000,
        )  # fmt: skip

    ctx = RequestContext("req-1", started, endpoint="chat", key="team-a", provider="b")
    ctx.hedge_losers = (racer(None, 0), racer("a", 5), racer("c", 7))  # None: never answered
    ledger.add(ctx, 0.5)
    assert (ledger.pending, ledger.dropped) == (2, 1)  # the request's row and a's; c's dropped
    assert await ledger.flush()
    request, a = db.rows
    assert (request["hedge_loser"], request["provider"]) == (False, "b")
    assert (a["hedge_loser"], a["provider"], a["upstream_model"]) == (True, "a", "a-m")
    assert (a["prompt_tokens"], a["completion_tokens"], a["cost_nano_usd"]) == (5, 5, 5_000_000)
    assert (a["key"], a["request_id"], a["ts"]) == ("team-a", "req-1", request["ts"])
