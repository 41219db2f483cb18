"""A hedged racer that lost had begun answering: the provider charges its tokens, so
they count in the request's budgets and token limits as they do in usage."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import pytest

from llmgw.api.calls import parse_call
from llmgw.core import estimate_prompt_tokens
from tests.conftest import CLIENT_KEY, GatewayFactory
from tests.fakes import FakeOpenAI, reply_stream
from tests.test_routing import ASK, chat, two

Maker = Callable[[], Awaitable[FakeOpenAI]]
ADMIN = {"Authorization": "Bearer admin-secret-1"}
AS_CLIENT = {"Authorization": f"Bearer {CLIENT_KEY}"}


async def test_a_losing_racers_tokens_count_in_budgets_and_token_limits(
    gateway: GatewayFactory, make_fake: Maker, tmp_path: Path
) -> None:
    a, b = await make_fake(), await make_fake()
    gate = asyncio.Event()  # never set while the race runs: a begins, then says nothing
    a.default = reply_stream([b": hi\n\n", b"data: {}\n\n"], gate=gate)
    extra = "  hedge: {after: 100ms, max_extra: 1}"
    config = (
        two(a, b, extra=extra)
        + f"""
models:
  chain: [a/m-a, b/m-b]
prices:
  m-a: {{input: 1000, output: 1000}}
  m-b: {{input: 1000, output: 1000}}
database: {{url: "sqlite:///{tmp_path / "spend.db"}"}}
auth:
  admin_key: admin-secret-1
  keys:
    - name: team-a
      key: {CLIENT_KEY}
      budget: {{monthly_usd: 100, monthly_tokens: 1000000}}
      limits: {{tpm: 1000000}}
"""
    )
    gw = await gateway(config)
    response = await chat(gw, "chain", stream=True, headers=AS_CLIENT)
    await response.read()
    gate.set()
    assert response.headers["X-LLMGW-Provider"] == "b"
    usage = await (await gw.get("/api/v1/usage", headers=ADMIN)).json()
    loser, winner = usage["providers"]["a"], usage["providers"]["b"]
    assert loser["requests"] == 0 and loser["prompt_tokens"] > 0
    tokens = sum(p["prompt_tokens"] + p["completion_tokens"] for p in (loser, winner))
    cost = sum(p["cost_usd"] for p in (loser, winner))
    report = await (await gw.get("/api/v1/budget", headers=ADMIN)).json()
    (entry,) = [e for e in report["budgets"] if e["scope"] == "key:team-a"]
    assert entry["tokens"] == tokens
    assert entry["spent_usd"] == pytest.approx(cost)
    after = await chat(gw, "b/m-b", headers=AS_CLIENT)
    assert after.status == 200
    # the window holds both racers' tokens, then this request's reserved estimate
    body = {"model": "b/m-b", "messages": ASK}
    estimate = estimate_prompt_tokens(parse_call("chat", orjson.dumps(body)))
    used = 1_000_000 - int(after.headers["x-ratelimit-remaining-tokens"])
    assert used == tokens + estimate
