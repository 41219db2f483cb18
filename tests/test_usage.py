"""Usage, tokens and cost (SPEC §5, §7): /api/v1/usage, metrics, log, estimates."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from llmgw.config import parse
from llmgw.core import Call
from llmgw.observe.usage import (
    DEFAULT_PRICES,
    Spend,
    UsageBook,
    estimate_prompt_tokens,
    price_for,
    usage_from_fields,
)
from llmgw.server.appkeys import LIMITER
from tests.conftest import CLIENT_KEY, one_provider
from tests.fakes import FakeOpenAI, chat_chunks, reply_json, reply_stream, wait_for

MESSAGES = [{"role": "user", "content": "x" * 40}]  # estimated at 10 tokens
CHAT = {"model": "gpt-4o-mini", "messages": MESSAGES}
AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}
ADMIN = "admin-secret-1"


def keyed(url: str, extra: str = "") -> str:
    return (
        one_provider(url)
        + f"""
auth:
  admin_key: {ADMIN}
  keys:
    - {{name: team-a, key: {CLIENT_KEY}, limits: {{tpm: 100000}}}}
{extra}"""
    )


async def usage_of(gw: Any) -> dict[str, Any]:
    response = await gw.get("/api/v1/usage", headers={"Authorization": f"Bearer {ADMIN}"})
    assert response.status == 200
    report: dict[str, Any] = await response.json()
    return report


async def test_usage_totals_and_breakdowns(fake: FakeOpenAI, gateway: Any) -> None:
    gw = await gateway(keyed(fake.url, "prices:\n  gpt-4o-mini: {input: 1.0, output: 2.0}\n"))
    for _ in range(2):
        assert (await gw.post("/v1/chat/completions", json=CHAT, headers=AUTH)).status == 200
    assert (await gw.post("/v1/chat/completions", json=CHAT)).status == 401  # not counted
    report = await usage_of(gw)
    expected = {"requests": 2, "prompt_tokens": 18, "completion_tokens": 6, "cost_usd": 3e-05}
    assert report["source"] == "memory"
    assert report["total"] == expected
    assert report["keys"] == {"team-a": expected}
    assert report["models"] == {"gpt-4o-mini": expected}
    assert report["providers"] == {"up": expected}


async def test_usage_needs_the_admin_key(fake: FakeOpenAI, gateway: Any) -> None:
    gw = await gateway(keyed(fake.url))
    assert (await gw.get("/api/v1/usage")).status == 401
    assert (await gw.get("/api/v1/usage", headers=AUTH)).status == 401  # a client key is not it


async def test_metrics_and_log_carry_tokens_and_cost(
    fake: FakeOpenAI, gateway: Any, caplog: Any
) -> None:
    caplog.set_level("INFO", logger="llmgw.access")
    gw = await gateway(keyed(fake.url))  # gpt-4o-mini at the built-in price
    await (await gw.post("/v1/chat/completions", json=CHAT, headers=AUTH)).read()
    await wait_for(lambda: any(r.name == "llmgw.access" for r in caplog.records))
    record = next(r for r in caplog.records if r.name == "llmgw.access")
    inp, out = DEFAULT_PRICES["gpt-4o-mini"]
    cost = round((9 * inp + 3 * out) / 1e6, 9)
    assert (record.key, record.prompt_tokens, record.completion_tokens) == ("team-a", 9, 3)
    assert record.cost_usd == pytest.approx(cost)
    admin = {"Authorization": f"Bearer {ADMIN}"}  # /metrics is admin-only on the main port
    metrics = await (await gw.get("/metrics", headers=admin)).text()
    labels = 'model="gpt-4o-mini",provider="up"'
    assert f'llmgw_tokens_total{{key="team-a",kind="prompt",{labels}}} 9.0' in metrics
    assert f'llmgw_tokens_total{{key="team-a",kind="completion",{labels}}} 3.0' in metrics
    assert f'llmgw_cost_usd_total{{key="team-a",{labels}}} {cost}' in metrics


async def test_open_gateway_counts_anonymous(fake: FakeOpenAI, gateway: Any) -> None:
    gw = await gateway(one_provider(fake.url))
    await (await gw.post("/v1/chat/completions", json=CHAT)).read()
    report = await usage_of(gw)  # no admin key: loopback may ask
    assert report["keys"]["anonymous"]["requests"] == 1


async def test_estimates_when_provider_sends_no_usage(fake: FakeOpenAI, gateway: Any) -> None:
    answer = {
        "id": "x",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "abcdefghij"}}],
    }
    fake.then(reply_json(answer), reply_stream(chat_chunks(["a", "b", "c"], usage=False)))
    gw = await gateway(keyed(fake.url))
    await (await gw.post("/v1/chat/completions", json=CHAT, headers=AUTH)).read()
    report = await usage_of(gw)
    assert (report["total"]["prompt_tokens"], report["total"]["completion_tokens"]) == (10, 3)
    stream = {**CHAT, "stream": True}
    await (await gw.post("/v1/chat/completions", json=stream, headers=AUTH)).read()
    report = await usage_of(gw)
    # role event + 3 words + finish event + [DONE], less the opening event
    assert (report["total"]["prompt_tokens"], report["total"]["completion_tokens"]) == (20, 3 + 5)


async def test_failed_request_counts_a_request_but_no_tokens(gateway: Any) -> None:
    gw = await gateway(keyed("http://127.0.0.1:9/v1"))
    assert (await gw.post("/v1/chat/completions", json=CHAT, headers=AUTH)).status == 502
    report = await usage_of(gw)
    assert report["total"] == {
        "requests": 1,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost_usd": 0.0,
    }
    assert report["providers"] == {}


async def test_cancelled_stream_is_charged_for_what_it_streamed(
    fake: FakeOpenAI, gateway: Any
) -> None:
    fake.then(fake.slow_stream(chunks=500, delay=0.01))  # never sends usage
    gw = await gateway(keyed(fake.url))
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            gw.make_url("/v1/chat/completions"), json={**CHAT, "stream": True}, headers=AUTH
        )
        for _ in range(5):
            await response.content.readuntil(b"\n\n")
        response.close()  # the client goes away mid-stream
    await asyncio.wait_for(fake.stream_closed.wait(), 3)

    async def charged() -> dict[str, Any]:
        for _ in range(300):
            report = await usage_of(gw)
            if report["total"]["requests"]:
                return report
            await asyncio.sleep(0.01)
        raise AssertionError("the cancelled stream was never accounted")

    total = (await charged())["total"]
    assert total["prompt_tokens"] == 10
    assert 4 <= total["completion_tokens"] < 500
    # and the key's tpm counted the same tokens
    tokens = gw.app[LIMITER].memory.scopes["key:team-a"].tokens
    assert tokens.total == total["prompt_tokens"] + total["completion_tokens"]


def test_prices_lookup() -> None:
    prices = parse(
        one_provider("http://127.0.0.1:9/v1")
        + "prices:\n  gpt-4o: {input: 1, output: 2}\n  up/special: {input: 3, output: 4}\n",
        environ={},
    ).prices
    assert price_for(prices, "openai", "gpt-4o") == (1, 2)  # config overrides the default
    assert price_for(prices, "openai", "gpt-4o-2024-08-06") == (1, 2)  # dated snapshot
    assert price_for(prices, "openai", "gpt-4o-mini") == DEFAULT_PRICES["gpt-4o-mini"]
    assert price_for(prices, "anthropic", "claude-sonnet-4-5-20250929") == (3.0, 15.0)
    assert price_for(prices, "up", "special") == (3, 4)
    assert price_for(prices, "other", "special") is None
    assert price_for(prices, "demo", "echo") is None


def test_prompt_estimate_reads_message_text() -> None:
    body = {
        "model": "m",
        "system": "s" * 8,
        "messages": [
            {"role": "user", "content": "a" * 10},
            {"role": "user", "content": [{"type": "text", "text": "b" * 6}, {"type": "image_url"}]},
        ],
    }
    assert estimate_prompt_tokens(Call("chat", "m", False, body, b"")) == 6  # 24 chars
    assert estimate_prompt_tokens(Call("embeddings", "m", False, {"input": ["abcd"] * 3}, b"")) == 3


def test_shared_fields_read_back_as_the_memory_report() -> None:
    book = UsageBook.__new__(UsageBook)
    UsageBook.__init__(book, metrics=None)  # type: ignore[arg-type]
    spends = [Spend("a", "m", "p", 5, 7, 1200), Spend("b", "m", None, 1, 0, 0)]
    fields: dict[str, int] = {}
    for spend in spends:
        book.add(spend)
        for name, n in spend.increments():
            fields[name] = fields.get(name, 0) + n
    shared = usage_from_fields(fields, since=1.0)
    local = book.as_json()
    for part in ("total", "keys", "models", "providers"):
        assert shared[part] == local[part]
