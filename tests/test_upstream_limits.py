"""Upstream rate limits (429) and overload (529/503) as the client sees them, and how
the SDKs' own retries compose with the gateway's (SPEC §2, §3; README "Retries")."""

from __future__ import annotations

import time
from typing import Any

import anthropic
import openai
import pytest
from aiohttp import web

from tests.conftest import CLIENT_KEY, PROVIDER_KEY
from tests.fakes import Behaviour, FakeOpenAI, reply_error
from tests.provider_fakes import FakeAnthropic, anthropic_error, serve

BODY = {"model": "chain", "messages": [{"role": "user", "content": "hi"}]}
ASK = [{"role": "user", "content": "hi"}]


def chain(first: str, second: str, *, retries: int = 0, routing: str = "") -> str:
    return f"""
providers:
  first: {{type: openai, base_url: "{first}", api_key: {PROVIDER_KEY}, max_retries: {retries}}}
  second: {{type: openai, base_url: "{second}", api_key: {PROVIDER_KEY}, max_retries: {retries}}}
models:
  chain: [first/model-a, second/model-b]
{routing}
"""


def claude_chain(first: str, second: str) -> str:
    return f"""
providers:
  east: {{type: anthropic, base_url: "{first}", api_key: {PROVIDER_KEY}, max_retries: 0}}
  west: {{type: anthropic, base_url: "{second}", api_key: {PROVIDER_KEY}, max_retries: 0}}
models:
  claude: [east/claude-haiku-4-5, west/claude-haiku-4-5]
"""


def timed(arrivals: list[float], behaviour: Behaviour) -> Behaviour:
    """``behaviour``, noting when each request arrived."""

    async def behave(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        arrivals.append(time.monotonic())
        return await behaviour(request, body)

    return behave


def overloaded(**headers: str) -> Behaviour:
    """Anthropic's 529, as its API sends it."""
    error = anthropic_error(529, "overloaded_error", "Overloaded")

    async def behave(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        response = await error(request, body)
        response.headers.update(headers)
        return response

    return behave


def sdk_with_retries(gw: Any) -> openai.AsyncOpenAI:
    """The openai SDK as users run it: default retries (2)."""
    return openai.AsyncOpenAI(base_url=str(gw.make_url("/v1")), api_key=CLIENT_KEY)


@pytest.fixture
async def pair(make_fake: Any) -> tuple[FakeOpenAI, FakeOpenAI]:
    return await make_fake(), await make_fake()


async def test_every_target_429_is_429_with_the_smallest_retry_after(
    pair: tuple[FakeOpenAI, FakeOpenAI], gateway: Any
) -> None:
    first, second = pair
    first.default = reply_error(429, "slow down", **{"Retry-After": "7"})
    second.default = reply_error(429, "slow down", **{"retry-after-ms": "2500"})
    gw = await gateway(chain(first.url, second.url))
    response = await gw.post("/v1/chat/completions", json=BODY)
    error = (await response.json())["error"]
    assert response.status == 429
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert "slow down" not in error["message"]
    assert response.headers["Retry-After"] == "3"  # 2.5 s, rounded up to whole seconds
    assert "x-should-retry" not in response.headers  # the SDKs retry a 429 on their own


async def test_every_target_429_without_a_hint_has_no_retry_after(
    pair: tuple[FakeOpenAI, FakeOpenAI], gateway: Any
) -> None:
    first, second = pair
    first.default = second.default = reply_error(429)
    gw = await gateway(chain(first.url, second.url))
    response = await gw.post("/v1/chat/completions", json=BODY)
    assert response.status == 429
    assert "Retry-After" not in response.headers


async def test_openai_sdk_retry_waits_the_retry_after_then_succeeds(
    pair: tuple[FakeOpenAI, FakeOpenAI], gateway: Any
) -> None:
    """One SDK call, default retries: the gateway's 429 says 1 s (the smaller of 1 and 4);
    the SDK waits that long, not its own ~0.5 s backoff, and the next round succeeds."""
    first, second = pair
    arrivals: list[float] = []
    first.then(timed(arrivals, reply_error(429, **{"Retry-After": "1"})))
    first.default = timed(arrivals, first.echo)
    second.then(reply_error(429, **{"Retry-After": "4"}))
    gw = await gateway(chain(first.url, second.url))
    async with sdk_with_retries(gw) as client:
        answer = await client.chat.completions.create(model="chain", messages=ASK)  # type: ignore[arg-type]
    assert answer.model == "model-a"
    assert (len(first.seen), len(second.seen)) == (2, 1)
    assert arrivals[1] - arrivals[0] >= 0.9


async def test_mixed_429_and_500_stays_502(
    pair: tuple[FakeOpenAI, FakeOpenAI], gateway: Any
) -> None:
    first, second = pair
    first.default = reply_error(500)
    second.default = reply_error(429, **{"Retry-After": "5"})
    gw = await gateway(chain(first.url, second.url))
    response = await gw.post("/v1/chat/completions", json=BODY)
    assert response.status == 502
    assert (await response.json())["error"]["code"] == "upstream_error"
    assert "x-should-retry" not in response.headers  # a 500 may pass


async def test_an_open_circuit_beside_429s_still_answers_429(
    pair: tuple[FakeOpenAI, FakeOpenAI], gateway: Any
) -> None:
    """A skipped target could not have served; the client can act on the 429's wait."""
    first, second = pair
    first.default = reply_error(500)
    second.default = reply_error(429, **{"Retry-After": "5"})
    routing = "routing:\n  circuit_breaker: {failures: 1, cooldown: 60s}"
    gw = await gateway(chain(first.url, second.url, routing=routing))
    assert (await gw.post("/v1/chat/completions", json=BODY)).status == 502  # opens first's
    response = await gw.post("/v1/chat/completions", json=BODY)
    assert response.status == 429
    assert response.headers["Retry-After"] in ("4", "5")
    assert len(first.seen) == 1


async def test_upstream_429_does_not_open_the_circuit(fake: FakeOpenAI, gateway: Any) -> None:
    fake.default = reply_error(429, **{"Retry-After": "3"})
    config = f"""
providers:
  only: {{type: openai, base_url: "{fake.url}", api_key: k, models: [m], max_retries: 0}}
routing:
  circuit_breaker: {{failures: 2, cooldown: 60s}}
"""
    gw = await gateway(config)
    for _ in range(4):
        response = await gw.post("/v1/chat/completions", json={**BODY, "model": "m"})
        assert (response.status, response.headers.get("Retry-After")) == (429, "3")
    assert len(fake.seen) == 4
    status = await (await gw.get("/api/v1/providers/status")).json()
    assert status["providers"]["only"]["circuit"] == "closed"


async def test_a_retry_after_over_10s_is_the_clients_wait_not_the_gateways(
    fake: FakeOpenAI, gateway: Any
) -> None:
    fake.default = reply_error(429, **{"Retry-After": "30"})
    config = f"""
providers:
  only: {{type: openai, base_url: "{fake.url}", api_key: k, models: [m], max_retries: 2}}
"""
    gw = await gateway(config)
    response = await gw.post("/v1/chat/completions", json={**BODY, "model": "m"})
    assert (response.status, response.headers["Retry-After"]) == (429, "30")
    assert len(fake.seen) == 1  # not retried after waiting 10 s for nothing


async def test_a_relayed_provider_429_keeps_its_retry_after(fake: FakeOpenAI, gateway: Any) -> None:
    """With 429 left out of fallback_on the provider's 429 is relayed, wait included."""
    fake.default = reply_error(429, "slow down", **{"Retry-After": "6"})
    config = f"""
providers:
  only: {{type: openai, base_url: "{fake.url}", api_key: k, models: [m], max_retries: 0}}
routing:
  fallback_on: [connect_error, timeout, 500]
"""
    gw = await gateway(config)
    response = await gw.post("/v1/chat/completions", json={**BODY, "model": "m"})
    assert (response.status, response.headers["Retry-After"]) == (429, "6")
    assert (await response.json())["error"]["message"] == "slow down"


async def test_every_anthropic_target_overloaded_is_503_overloaded_error(
    aiohttp_server: Any, gateway: Any
) -> None:
    east, west = FakeAnthropic(), FakeAnthropic()
    for fake in (east, west):
        await serve(aiohttp_server, fake)
    east.default = overloaded()
    west.default = overloaded(**{"retry-after": "2"})
    gw = await gateway(claude_chain(east.url, west.url))
    client = anthropic.AsyncAnthropic(
        base_url=str(gw.make_url("")), api_key=CLIENT_KEY, max_retries=0
    )
    async with client:
        with pytest.raises(anthropic.InternalServerError) as caught:
            await client.messages.create(model="claude", max_tokens=16, messages=ASK)  # type: ignore[arg-type]
    error = caught.value
    assert error.status_code == 503
    assert error.body == {
        "type": "error",
        "error": {
            "type": "overloaded_error",
            "message": (
                "Every provider for 'claude' is overloaded (east: status_503; west: status_503)"
            ),
        },
    }
    assert error.response.headers["retry-after"] == "2"
    assert "x-should-retry" not in error.response.headers

    # The OpenAI surface: the same 503, SPEC's code for "no provider can serve now".
    response = await gw.post("/v1/chat/completions", json={**BODY, "model": "claude"})
    error_body = (await response.json())["error"]
    assert (response.status, error_body["type"]) == (503, "api_error")
    assert error_body["code"] == "no_provider_available"


async def test_anthropic_sdk_retry_honours_the_overload_wait(
    aiohttp_server: Any, gateway: Any
) -> None:
    east, west = FakeAnthropic(), FakeAnthropic()
    for fake in (east, west):
        await serve(aiohttp_server, fake)
    arrivals: list[float] = []
    east.then(timed(arrivals, overloaded(**{"retry-after": "1"})))
    west.then(overloaded(**{"retry-after": "3"}))
    east.default = timed(arrivals, east.default)
    gw = await gateway(claude_chain(east.url, west.url))
    client = anthropic.AsyncAnthropic(base_url=str(gw.make_url("")), api_key=CLIENT_KEY)
    async with client:  # default retries (2)
        message = await client.messages.create(model="claude", max_tokens=16, messages=ASK)  # type: ignore[arg-type]
    assert message.content[0].type == "text"
    assert (len(east.seen), len(west.seen)) == (2, 1)
    assert arrivals[1] - arrivals[0] >= 0.9


# x-should-retry: false where retrying cannot help ----------------------------------


async def test_credentials_refused_everywhere_tells_the_sdk_not_to_retry(
    pair: tuple[FakeOpenAI, FakeOpenAI], gateway: Any
) -> None:
    first, second = pair
    first.default = reply_error(401, "bad key")
    second.default = reply_error(403, "forbidden")
    gw = await gateway(chain(first.url, second.url, retries=1))
    async with sdk_with_retries(gw) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="chain", messages=ASK)  # type: ignore[arg-type]
    assert caught.value.status_code == 502
    assert caught.value.response.headers["x-should-retry"] == "false"
    # One SDK request, one attempt per target (401/403 are not retried by the gateway
    # either): without the header the SDK would have sent three, and six went upstream.
    assert (len(first.seen), len(second.seen)) == (1, 1)


async def test_every_provider_disabled_tells_the_sdk_not_to_retry(gateway: Any) -> None:
    config = """
providers:
  openai: {type: openai, api_key: "", models: [gpt-4o]}
"""
    gw = await gateway(config)
    async with sdk_with_retries(gw) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="gpt-4o", messages=ASK)  # type: ignore[arg-type]
    assert caught.value.status_code == 503
    assert caught.value.response.headers["x-should-retry"] == "false"
    metrics = await (await gw.get("/metrics")).text()
    answered = [line for line in metrics.splitlines() if line.startswith("llmgw_requests_total{")]
    assert len(answered) == 1 and answered[0].endswith(" 1.0"), answered  # one request


async def test_sdk_and_gateway_retries_multiply_on_a_failure_that_may_pass(
    fake: FakeOpenAI, gateway: Any
) -> None:
    """What README's retry section counts: 3 SDK requests, each 2 gateway attempts (the
    circuit breaker off; with its default of 5 failures the last attempt is skipped)."""
    fake.default = reply_error(500)
    config = f"""
providers:
  only: {{type: openai, base_url: "{fake.url}", api_key: k, models: [m], max_retries: 1}}
routing:
  circuit_breaker: {{failures: 0}}
"""
    gw = await gateway(config)
    async with sdk_with_retries(gw) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="m", messages=ASK)  # type: ignore[arg-type]
    assert caught.value.status_code == 502
    assert "x-should-retry" not in caught.value.response.headers
    assert len(fake.seen) == 6
