"""Smart routing over HTTP (SPEC §10): virtual models, capabilities, pools, extensions,
the routing decision in headers and bodies, hedging, the admin view."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.conftest import PROVIDER_KEY, GatewayFactory
from tests.fakes import FakeOpenAI, chat_completion, reply_error, reply_stream

Maker = Callable[[], Awaitable[FakeOpenAI]]
ASK = [{"role": "user", "content": "What is 2+2?"}]


def delayed(fake: FakeOpenAI, delay: list[float]) -> None:
    """Answer every request after ``delay[0]`` seconds (changeable while serving)."""

    async def behave(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        await asyncio.sleep(delay[0])
        return await fake.echo(request, body)

    fake.default = behave


def two(a: FakeOpenAI, b: FakeOpenAI, extra: str = "", profiles: str = "") -> str:
    return f"""
providers:
  a: {{type: openai, base_url: {a.url}, api_key: {PROVIDER_KEY}, models: [m-a], max_retries: 0}}
  b: {{type: openai, base_url: {b.url}, api_key: {PROVIDER_KEY}, models: [m-b], max_retries: 0}}
routing:
  candidates: [a/m-a, b/m-b]
{extra}
profiles:
  m-a: {{quality: 0.7, tools: true, latency_ms: 500}}
  m-b: {{quality: 0.7, tools: true, latency_ms: 500}}
{profiles}
"""


async def chat(gw: Any, model: str, **extra: Any) -> Any:
    headers = extra.pop("headers", None)
    body = {"model": model, "messages": extra.pop("messages", ASK), **extra}
    return await gw.post("/v1/chat/completions", json=body, headers=headers)


async def test_fast_picks_the_quicker_upstream_and_reranks_when_it_slows(
    gateway: GatewayFactory, make_fake: Maker
) -> None:
    a, b = await make_fake(), await make_fake()
    delay_a, delay_b = [0.01], [0.15]
    delayed(a, delay_a)
    delayed(b, delay_b)
    gw = await gateway(two(a, b))
    for model in ("a/m-a", "b/m-b"):  # one observation of each
        assert (await chat(gw, model)).status == 200
    response = await chat(gw, "fast")
    assert response.status == 200
    assert response.headers["X-LLMGW-Provider"] == "a"
    assert response.headers["X-LLMGW-Routing"].startswith("latency: a/m-a (score ")
    delay_a[0] = 0.4  # a slows down: its moving average climbs until b is quicker
    chosen = []
    for _ in range(15):
        response = await chat(gw, "fast")
        chosen.append(response.headers["X-LLMGW-Provider"])
        if chosen[-1] == "b":
            break
    assert chosen[-1] == "b", chosen
    assert chosen[0] == "a"  # it took observations, not a guess


async def test_cheap_picks_by_prices(gateway: GatewayFactory, make_fake: Maker) -> None:
    a, b = await make_fake(), await make_fake()
    for dear, cheap in (("m-a", "m-b"), ("m-b", "m-a")):
        prices = (
            f"prices:\n  {dear}: {{input: 5, output: 20}}\n  {cheap}: {{input: 0.1, output: 0.2}}"
        )
        gw = await gateway(two(a, b) + prices)
        response = await chat(gw, "cheap")
        assert response.status == 200
        assert response.headers["X-LLMGW-Model"] == cheap
        assert response.headers["X-LLMGW-Routing"].startswith(f"cost: {cheap[-1]}/{cheap} (score")


TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


async def test_a_tools_request_never_goes_to_a_model_without_tools(
    gateway: GatewayFactory, make_fake: Maker
) -> None:
    a, b = await make_fake(), await make_fake()
    # a is better and cheaper, but cannot call tools
    config = two(a, b, profiles="  a/m-a: {quality: 0.99, tools: false, latency_ms: 10}")
    config += "prices:\n  m-a: {input: 0.1, output: 0.1}\n  m-b: {input: 9, output: 9}"
    gw = await gateway(config)
    for strategy in ("balanced", "cost", "quality", "latency"):
        response = await chat(gw, "auto", tools=[TOOL], headers={"x-routing-strategy": strategy})
        assert response.status == 200
        assert response.headers["X-LLMGW-Provider"] == "b", strategy
    without = await chat(gw, "auto")
    assert without.headers["X-LLMGW-Provider"] == "a"
    assert not any("tools" in seen.body for seen in a.seen)
    # no candidate with tools at all: 400 naming the field
    only_a = await gateway(
        two(a, b, extra="  candidates: [a/m-a]")
        .replace("  candidates: [a/m-a, b/m-b]\n", "", 1)
        .replace("m-a: {quality: 0.7, tools: true", "m-a: {quality: 0.7, tools: false")
    )
    refused = await chat(only_a, "auto", tools=[TOOL])
    assert refused.status == 400
    assert (await refused.json())["error"]["param"] == "tools"


async def test_complex_prompts_need_a_capable_model(
    gateway: GatewayFactory, make_fake: Maker
) -> None:
    a, b = await make_fake(), await make_fake()
    config = two(a, b, profiles="  b/m-b: {quality: 0.95}")
    config += "prices:\n  m-a: {input: 0.1, output: 0.1}\n  m-b: {input: 9, output: 30}"
    gw = await gateway(config)
    simple = await chat(gw, "auto")
    assert simple.headers["X-LLMGW-Provider"] == "a"
    assert simple.headers["X-LLMGW-Routing"].endswith("complexity simple)")
    hard = "Prove that there are infinitely many primes, then write a Rust function for it."
    response = await chat(gw, "auto", messages=[{"role": "user", "content": hard}])
    assert response.headers["X-LLMGW-Provider"] == "b"
    assert response.headers["X-LLMGW-Routing"].endswith("complexity complex)")


async def test_an_alias_of_the_same_name_wins_over_the_virtual_model(
    gateway: GatewayFactory, make_fake: Maker
) -> None:
    a, b = await make_fake(), await make_fake()
    gw = await gateway(two(a, b) + "models:\n  fast: b/m-b\n")
    response = await chat(gw, "fast")
    assert response.headers["X-LLMGW-Routing"] == "ordered: b/m-b (complexity simple)"
    models = await (await gw.get("/v1/models")).json()
    names = [m["id"] for m in models["data"]]
    assert names.count("fast") == 1 and "auto" in names and "cheap" in names


async def test_weighted_pool_over_http_and_least_busy(
    gateway: GatewayFactory, make_fake: Maker
) -> None:
    a, b = await make_fake(), await make_fake()
    pool = """models:
  pool:
    strategy: weighted
    targets: [{target: a/m-a, weight: 3}, {target: b/m-b, weight: 1}]
"""
    gw = await gateway(two(a, b) + pool)
    for _ in range(8):
        response = await chat(gw, "pool")
        assert response.status == 200
        assert response.headers["X-LLMGW-Routing"].startswith("weighted: ")
    assert (len(a.seen), len(b.seen)) == (6, 2)
    metrics = await (await gw.get("/metrics")).text()
    assert 'llmgw_routing_decisions_total{strategy="weighted",target="a/m-a"} 6.0' in metrics


async def test_decision_in_header_and_body(gateway: GatewayFactory, make_fake: Maker) -> None:
    a, b = await make_fake(), await make_fake()
    config = two(a, b, extra="  response_metadata: true") + "cache: {enabled: true}\n"
    config += "prices:\n  m-a: {input: 1, output: 2}\n  m-b: {input: 5, output: 20}"
    gw = await gateway(config)
    response = await chat(gw, "auto")
    body = await response.json()
    header = response.headers["X-LLMGW-Routing"]
    assert header.startswith("balanced: a/m-a (score 1.00, complexity simple")
    block = body["x-gateway"]
    assert block["provider"] == "a" and block["routing_decision"] == header
    assert block["cache_hit"] is False and block["fallback_used"] is False
    assert block["cost_usd"] == (9 * 1 + 3 * 2) / 1_000_000
    assert block["latency_ms"] > 0
    assert body["choices"][0]["message"]["content"] == "echo from m-a"
    hit = await chat(gw, "auto")
    assert hit.headers["X-Cache"] == "HIT"
    assert hit.headers["X-LLMGW-Routing"].startswith("cache: a/m-a")
    assert (await hit.json())["x-gateway"]["cache_hit"] is True
    # a stream: a comment line after its last event, before it ends
    streamed = await chat(gw, "auto", stream=True, messages=[{"role": "user", "content": "s"}])
    text = await streamed.text()
    assert streamed.headers["X-LLMGW-Routing"].startswith("balanced: a/m-a")
    before, _, after = text.rpartition(": x-gateway ")
    assert "data: [DONE]" in before
    assert orjson.loads(after)["routing_decision"].startswith("balanced: a/m-a")


async def test_an_exact_hit_says_the_misss_complexity_without_classifying_again(
    gateway: GatewayFactory, make_fake: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The classifier runs for X-LLMGW-Routing; an exact hit is the same prompt, so its
    class comes with the cached entry (a tenth of a hit's CPU otherwise)."""
    import llmgw.api.routing as routing_api

    calls: list[object] = []
    real = routing_api.classify
    monkeypatch.setattr(routing_api, "classify", lambda body: calls.append(1) or real(body))
    a, b = await make_fake(), await make_fake()
    gw = await gateway(two(a, b) + "cache: {enabled: true}\n")
    proof = [{"role": "user", "content": "Prove that the algorithm terminates, step by step."}]
    miss = await chat(gw, "a/m-a", messages=proof)
    assert miss.headers["X-Cache"] == "MISS"
    said = miss.headers["X-LLMGW-Routing"]
    assert said.startswith("ordered: a/m-a (complexity ") and "simple" not in said
    assert len(calls) == 1
    hit = await chat(gw, "a/m-a", messages=proof)
    assert hit.headers["X-Cache"] == "HIT"
    assert hit.headers["X-LLMGW-Routing"] == said.replace("ordered:", "cache:")
    assert len(calls) == 1


async def test_metadata_in_body_on_request_with_the_sdk(
    gateway: GatewayFactory, make_fake: Maker, sdk: Any
) -> None:
    a, b = await make_fake(), await make_fake()
    gw = await gateway(two(a, b))
    raw = await sdk(gw).chat.completions.with_raw_response.create(
        model="auto",
        messages=ASK,
        extra_body={"x-gateway": {"metadata_in_body": True, "metadata": {"feature": "faq"}}},
    )
    assert raw.headers["X-LLMGW-Routing"].startswith("balanced: a/m-a")
    completion = raw.parse()
    assert completion.model_extra is not None
    assert completion.model_extra["x-gateway"]["provider"] == "a"
    assert "x-gateway" not in a.seen[-1].body  # never upstream


async def test_extensions_are_removed_and_plain_bodies_stay_exact(
    gateway: GatewayFactory, make_fake: Maker
) -> None:
    a, b = await make_fake(), await make_fake()
    gw = await gateway(two(a, b) + "cache: {enabled: true}\n")
    plain = b'{"model": "m-a",  "messages": [{"role": "user", "content": "hi"}]}'
    response = await gw.post(
        "/v1/chat/completions", data=plain, headers={"Content-Type": "application/json"}
    )
    assert response.status == 200
    assert a.seen[-1].raw == plain  # the client's exact bytes
    body = {
        "model": "a/m-a",
        "messages": [{"role": "user", "content": "hi"}],
        "x-cache": False,
        "x-budget-key": "team-x",
        "x-routing-strategy": "cost",
        "x-prefer-provider": "b",
        "x-gateway": {"timeout": 20, "metadata": {"user": "u1"}},
    }
    response = await gw.post("/v1/chat/completions", json=body)
    assert response.status == 200
    assert response.headers["X-Cache"] == "BYPASS"
    sent = a.seen[-1]
    assert sent.body == {"model": "m-a", "messages": [{"role": "user", "content": "hi"}]}
    assert not any(name.startswith("x-") for name in orjson.loads(sent.raw))
    # x-prefer-provider moves b first on a virtual model
    preferred = await chat(gw, "auto", headers={"x-prefer-provider": "b"})
    assert preferred.headers["X-LLMGW-Provider"] == "b"


async def test_bad_extensions_are_400_naming_the_field(
    gateway: GatewayFactory, make_fake: Maker
) -> None:
    a, b = await make_fake(), await make_fake()
    gw = await gateway(two(a, b))
    cases: list[tuple[dict[str, Any], dict[str, str] | None, str]] = [
        ({"x-routing-strategy": "fastest"}, None, "x-routing-strategy"),
        ({}, {"x-routing-strategy": "nope"}, "x-routing-strategy"),
        ({"x-gateway": {"strategy": "nope"}}, None, "x-gateway.strategy"),
        ({"x-prefer-provider": "nowhere"}, None, "x-prefer-provider"),
        ({"x-gateway": {"provider": "nowhere"}}, None, "x-gateway.provider"),
        ({"x-gateway": {"metadata": {f"k{i}": "v" for i in range(9)}}}, None, "x-gateway.metadata"),
        ({"x-gateway": {"metadata": {"k": "v" * 65}}}, None, "x-gateway.metadata"),
        ({"x-gateway": {"timeout": -1}}, None, "x-gateway.timeout"),
        ({"x-gateway": {"colour": 1}}, None, "x-gateway.colour"),
        ({"x-cache": "maybe"}, None, "x-cache"),
        ({}, {"x-gateway": "{not json"}, "x-gateway"),
    ]
    for extra, headers, field in cases:
        response = await chat(gw, "auto", headers=headers, **extra)
        assert response.status == 400, (extra, headers)
        error = (await response.json())["error"]
        assert error["param"] == field and error["code"] == "invalid_request", error
    assert a.seen == [] and b.seen == []


async def test_gateway_timeout_is_capped_by_the_provider_timeout(
    gateway: GatewayFactory, make_fake: Maker
) -> None:
    a, b = await make_fake(), await make_fake()
    delayed(a, [5.0])
    config = two(a, b).replace("max_retries: 0}", "max_retries: 0, response_timeout: 0.3}", 1)
    gw = await gateway(config)
    # asking for longer than the provider allows changes nothing: it still times out
    response = await chat(gw, "a/m-a", **{"x-gateway": {"timeout": 60}})
    assert response.status == 504
    # a shorter one applies (b would answer at once, but its own timeout is 30 s)
    delayed(b, [5.0])
    response = await chat(gw, "b/m-b", **{"x-gateway": {"timeout": "200ms"}})
    assert response.status == 504


def stalled(fake: FakeOpenAI, closed: asyncio.Event) -> None:
    """Send nothing; note when the gateway closes the connection (bounded wait)."""

    async def behave(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        try:
            for _ in range(400):
                if request.transport is None or request.transport.is_closing():
                    break
                await asyncio.sleep(0.025)
        except asyncio.CancelledError:  # the server cancels a handler whose peer left
            closed.set()
            raise
        closed.set()
        return web.json_response(chat_completion("too late"))

    fake.default = behave


async def test_hedging_wins_against_a_stalled_first_target(
    gateway: GatewayFactory, make_fake: Maker, sdk: Any
) -> None:
    a, b = await make_fake(), await make_fake()
    closed = asyncio.Event()
    stalled(a, closed)
    config = two(a, b, extra="  hedge: {after: 100ms, max_extra: 1}")
    gw = await gateway(config + "models:\n  chain: [a/m-a, b/m-b]\n")
    raw = await sdk(gw).chat.completions.with_raw_response.create(
        model="chain", messages=ASK, stream=True
    )
    assert raw.headers["X-LLMGW-Provider"] == "b"
    stream = raw.parse()
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "echo from m-b"
    await asyncio.wait_for(closed.wait(), 5)  # the stalled upstream connection was closed
    assert len(a.seen) == 1 and len(b.seen) == 1
    metrics = await (await gw.get("/metrics")).text()
    assert 'llmgw_hedges_total{outcome="hedge"} 1.0' in metrics
    # a quick first target wins alone: no hedge starts
    a.default = a.echo
    response = await chat(gw, "chain")
    assert response.headers["X-LLMGW-Provider"] == "a"
    assert len(b.seen) == 1


async def test_routing_admin_view(gateway: GatewayFactory, make_fake: Maker) -> None:
    a, b = await make_fake(), await make_fake()
    gw = await gateway(two(a, b))
    await chat(gw, "auto")
    view = await (await gw.get("/api/v1/routing")).json()
    assert view["candidates"] == ["a/m-a", "b/m-b"]
    assert view["virtual_models"] == {"auto": "balanced", "fast": "latency", "cheap": "cost"}
    assert view["profiles"]["a/m-a"]["quality"] == 0.7
    assert set(view["latency_ms"]) == {"a/m-a"}
    (decision,) = view["recent"]
    assert decision["model"] == "auto" and decision["chain"] == ["a/m-a", "b/m-b"]
    refused = await gw.get("/api/v1/routing", headers={"X-Forwarded-For": "203.0.113.9"})
    assert refused.status == 403


async def test_shipped_config_answers_auto_through_demo(gateway: GatewayFactory) -> None:
    with open("gateway.yaml") as file:
        gw = await gateway(file.read())
    for model in ("auto", "fast", "cheap"):
        response = await chat(gw, model)
        assert response.status == 200, await response.text()
        assert response.headers["X-LLMGW-Provider"] == "demo"
        assert response.headers["X-LLMGW-Routing"].startswith(
            {"auto": "balanced", "fast": "latency", "cheap": "cost"}[model]
        )


async def test_a_hedged_stream_says_why_and_counts_one_request(
    gateway: GatewayFactory, make_fake: Maker
) -> None:
    a, b = await make_fake(), await make_fake()
    gate = asyncio.Event()  # never set while the race runs: a begins, then says nothing
    a.default = reply_stream([b": hi\n\n", b"data: {}\n\n"], gate=gate)
    config = two(a, b, extra="  hedge: {after: 100ms, max_extra: 1}\n  response_metadata: true")
    gw = await gateway(config + "models:\n  chain: [a/m-a, b/m-b]\n")
    response = await chat(gw, "chain", stream=True)
    text = await response.text()
    gate.set()
    assert response.headers["X-LLMGW-Provider"] == "b"
    before, _, after = text.rpartition(": x-gateway ")
    assert "data: [DONE]" in before  # the comment, as a stream that was not hedged has it
    block = orjson.loads(after)
    assert block["provider"] == "b" and block["fallback_used"] is True
    assert block["routing_decision"] == response.headers["X-LLMGW-Routing"]
    metrics = await (await gw.get("/metrics")).text()
    requests = [line for line in metrics.splitlines() if line.startswith("llmgw_requests_total{")]
    assert len(requests) == 1 and 'provider="b"' in requests[0] and requests[0].endswith(" 1.0")
    assert 'llmgw_hedges_total{outcome="hedge"} 1.0' in metrics
    assert 'llmgw_upstream_attempts_total{outcome="hedge_lost",provider="a"} 1.0' in metrics
    assert 'llmgw_upstream_attempts_total{outcome="success",provider="b"} 1.0' in metrics
    usage = await (await gw.get("/api/v1/usage")).json()
    assert usage["total"]["requests"] == 1  # the client made one request
    assert usage["providers"]["a"]["requests"] == 0  # the loser had begun: its tokens count
    assert usage["providers"]["a"]["prompt_tokens"] > 0


async def test_a_half_open_trial_that_loses_a_hedge_lets_the_next_trial_through(
    gateway: GatewayFactory, make_fake: Maker
) -> None:
    a, b = await make_fake(), await make_fake()
    closed = asyncio.Event()
    a.then(reply_error(500))  # opens a's circuit (one failure)
    extra = (
        "  hedge: {after: 100ms, max_extra: 1}\n  circuit_breaker: {failures: 1, cooldown: 200ms}"
    )
    gw = await gateway(two(a, b, extra=extra) + "models:\n  chain: [a/m-a, b/m-b]\n")
    assert (await chat(gw, "chain")).headers["X-LLMGW-Provider"] == "b"
    await asyncio.sleep(0.3)  # past the cooldown: the next request is a's trial
    stalled(a, closed)
    assert (await chat(gw, "chain")).headers["X-LLMGW-Provider"] == "b"  # the hedge won
    await asyncio.wait_for(closed.wait(), 5)
    a.default = a.echo
    await asyncio.sleep(0.3)
    assert (await chat(gw, "chain")).headers["X-LLMGW-Provider"] == "a"  # a new trial
