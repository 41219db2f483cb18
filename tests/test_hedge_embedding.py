"""The semantic cache's embedding call goes through the gateway's own routing, which
may hedge it (SPEC §10, §13): a racer that lost after its provider had begun answering
is paid for, so its tokens count as a client request's racers' do — in the in-memory
usage, the ledger (a row of its own, its tokens filled in), the asking key's budgets
and its ``tpm`` window — under the asking key and the embedding model; and the
embedding call itself is settled with the request's budgets and limits too, so every
figure agrees."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import CLIENT_KEY, PROVIDER_KEY, GatewayFactory
from tests.fakes import FakeOpenAI, reply_json

Maker = Callable[[], Awaitable[FakeOpenAI]]
ADMIN = {"Authorization": "Bearer admin-secret-1"}
FIGURES = ("requests", "prompt_tokens", "completion_tokens", "cost_usd")
TPM = 1_000_000


def config(a: FakeOpenAI, b: FakeOpenAI, db: Path, redis_url: str | None = None) -> str:
    shared = "" if redis_url is None else f"limits: {{backend: redis, redis_url: '{redis_url}'}}"
    return f"""{shared}
providers:
  a: {{type: openai, base_url: {a.url}, api_key: {PROVIDER_KEY}, models: [e-a], max_retries: 0}}
  b: {{type: openai, base_url: {b.url}, api_key: {PROVIDER_KEY}, models: [e-b], max_retries: 0}}
  mock: {{type: mock, models: [chat]}}
routing:
  hedge: {{after: 100ms, max_extra: 1}}
models:
  embed: [a/e-a, b/e-b]
prices:
  e-a: {{input: 1000, output: 0}}
  e-b: {{input: 3, output: 0}}
  chat: {{input: 10, output: 20}}
cache:
  enabled: true
  semantic: {{enabled: true, embedding_model: embed, lookup_timeout: 10s}}
database: {{url: "sqlite:///{db}"}}
budgets:
  global: {{monthly_usd: 1000}}
auth:
  admin_key: admin-secret-1
  keys:
    - {{name: team-a, key: {CLIENT_KEY}, budget: {{monthly_usd: 100, monthly_tokens: 1000000}},
        limits: {{tpm: {TPM}}}}}
"""


def begun(gate: asyncio.Event) -> Any:
    """An embeddings answer whose status, headers and first bytes come, then nothing
    until ``gate`` (bounded)."""

    async def behave(request: web.Request, _: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"object": "list", ')
        await asyncio.wait_for(gate.wait(), 30)
        await response.write(b'"data": []}')
        await response.write_eof()
        return response

    return behave


EMBEDDING = {
    "object": "list",
    "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3, 0.4]}],
    "model": "e-b",
    "usage": {"prompt_tokens": 7, "total_tokens": 7},
}


async def _get(gw: Any, path: str) -> Any:
    response = await gw.get(path, headers=ADMIN)
    assert response.status == 200, await response.text()
    return await response.json()


def _figures(entry: dict[str, Any]) -> dict[str, Any]:
    return {name: entry[name] for name in FIGURES}


async def _ask(gw: Any, **headers: str) -> Any:
    body = {"model": "chat", "messages": [{"role": "user", "content": "Which one answers?"}]}
    response = await gw.post(
        "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {CLIENT_KEY}", **headers},
    )
    assert response.status == 200, await response.text()
    await response.read()
    return response


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_hedged_embedding_calls_loser_counts_everywhere_as_a_requests_would(
    gateway: GatewayFactory,
    make_fake: Maker,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    backend: str,
) -> None:
    """With ``limits.backend: redis`` the running totals, the budgets and the ``tpm``
    window are Redis's: the same figures."""
    redis_url = request.getfixturevalue("redis_url") if backend == "redis" else None
    a, b = await make_fake(), await make_fake()
    gate = asyncio.Event()
    a.default = begun(gate)
    b.default = reply_json(EMBEDDING)
    gw = await gateway(config(a, b, tmp_path / "ledger.db", redis_url))
    try:
        first = await _ask(gw)
    finally:
        gate.set()
    assert first.headers["X-Cache"] == "MISS"
    assert [s.path for s in a.seen] == [s.path for s in b.seen] == ["/v1/embeddings"]

    memory = await _get(gw, "/api/v1/usage")
    assert memory["source"] == backend
    loser, winner = memory["providers"]["a"], memory["providers"]["b"]
    assert loser["requests"] == 0 and loser["prompt_tokens"] > 0 and loser["cost_usd"] > 0
    assert winner["requests"] == 1 and winner["prompt_tokens"] == 7
    embed = memory["models"]["embed"]  # under the embedding model and the asking key
    assert embed["prompt_tokens"] == loser["prompt_tokens"] + 7
    assert _figures(memory["keys"]["team-a"]) == _figures(memory["total"])
    tokens = memory["total"]["prompt_tokens"] + memory["total"]["completion_tokens"]

    budgets = {e["scope"]: e for e in (await _get(gw, "/api/v1/budget"))["budgets"]}
    for scope in ("key:team-a", "global"):
        assert budgets[scope]["tokens"] == tokens
        assert budgets[scope]["spent_usd"] == pytest.approx(memory["total"]["cost_usd"])

    ledger = await _get(gw, "/api/v1/usage?group_by=provider")
    assert ledger["source"] == "database"
    assert _figures(ledger["total"]) == _figures(memory["total"])
    assert {g["provider"]: _figures(g) for g in ledger["groups"]} == {
        name: _figures(t) for name, t in memory["providers"].items()
    }
    rows = {row["model"]: row for row in (await _get(gw, "/api/v1/requests"))["data"]}
    assert rows["embed"]["provider"] == "b" and rows["embed"]["key"] == "team-a"
    assert rows["embed"]["hedge_losers"] == [
        {
            "provider": "a",
            "upstream_model": "e-a",
            "prompt_tokens": loser["prompt_tokens"],
            "completion_tokens": 0,
            "cost_usd": loser["cost_usd"],
        }
    ]

    # The tpm window holds it all: the same request again (no lookup, so no embedding)
    # finds the first one's tokens there, the racer's and the embedding's included.
    again = await _ask(gw, **{"x-cache": "false"})
    assert (
        int(first.headers["x-ratelimit-remaining-tokens"])
        - int(again.headers["x-ratelimit-remaining-tokens"])
        == tokens
    )


async def test_the_ledgers_dropped_counter_says_it_counts_rows(gateway: GatewayFactory) -> None:
    """A hedge's racers have rows of their own: what is dropped is rows, not requests."""
    gw = await gateway("providers:\n  mock: {type: mock}\nauth: {admin_key: admin-secret-1}\n")
    text = await (await gw.get("/metrics", headers=ADMIN)).text()
    assert "# HELP llmgw_ledger_dropped_total Rows left out of the usage ledger" in text
    assert "# TYPE llmgw_ledger_dropped_total counter" in text
