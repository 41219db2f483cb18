"""Long answers and the circuit breaker: what a timeout means, and whose fault it is.

A non-streamed answer's head comes only when generation ends, so it is bounded by
``response_timeout``, not by ``timeout`` (a stream's time to first byte). The breaker
is charged for the provider's health (refused, connect timed out, 5xx, a stream's
timeout), never for one client's long request or for a 429.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import openai
import pytest

from llmgw.config import ConfigError, parse
from tests.conftest import PROVIDER_KEY
from tests.fakes import FakeOpenAI, chat_chunks, free_port, hang, reply_error, reply_stream
from tests.provider_fakes import FakeAnthropic, serve
from tests.test_http_network import dropping_syns

KEY_A, KEY_B = "sk-tenant-a-0123456789", "sk-tenant-b-0123456789"
HI = [{"role": "user", "content": "hi"}]


def config(url: str, *, extra: str = "", failures: int = 2, fallback: str = "") -> str:
    """``up`` serves gpt-4o-mini for two tenants; with ``fallback``, ``chain`` falls back
    from ``up`` to the provider there."""
    backup = ""
    if fallback:
        backup = f"""
  backup:
    type: openai
    base_url: {fallback}
    api_key: {PROVIDER_KEY}
models:
  chain: [up/gpt-4o-mini, backup/gpt-4o-mini]"""
    return f"""
providers:
  up:
    type: openai
    base_url: {url}
    api_key: {PROVIDER_KEY}
    models: [gpt-4o-mini]
    max_retries: 0{extra}{backup}
routing:
  circuit_breaker: {{failures: {failures}, cooldown: 60s}}
auth:
  keys:
    - {{name: a, key: {KEY_A}}}
    - {{name: b, key: {KEY_B}}}
"""


async def circuit(gw: Any) -> str:
    status = await (await gw.get("/api/v1/providers/status")).json()
    return str(status["providers"]["up"]["circuit"])


async def test_non_streamed_answer_may_take_longer_than_the_stream_timeout(
    fake: FakeOpenAI, gateway: Any, sdk: Any
) -> None:
    fake.then(hang(1.5))  # a reasoning model: the head comes when the answer is done
    extra = "\n    timeout: 500ms\n    response_timeout: 20s"
    gw = await gateway(config(fake.url, extra=extra))
    answer = await sdk(gw, KEY_A).chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert answer.choices[0].message.content == "Hello!"
    assert len(fake.seen) == 1


async def test_anthropic_client_gets_a_long_non_streamed_answer(
    aiohttp_server: Any, gateway: Any
) -> None:
    claude = FakeAnthropic()
    await serve(aiohttp_server, claude)
    echo = claude.default

    async def late(request: Any, body: dict[str, Any]) -> Any:
        await asyncio.sleep(1.5)  # the head comes when the whole answer is done
        return await echo(request, body)

    claude.then(late)
    gw = await gateway(
        f"""
providers:
  claude:
    type: anthropic
    base_url: {claude.url}
    api_key: {PROVIDER_KEY}
    models: [claude-x]
    max_retries: 0
    timeout: 500ms
"""
    )
    client = anthropic.AsyncAnthropic(
        base_url=str(gw.make_url("")), api_key="unused", max_retries=0
    )
    try:
        message = await client.messages.create(model="claude-x", max_tokens=16, messages=HI)
    finally:
        await client.close()
    assert message.content[0].type == "text" and message.content[0].text == "echo: hi"


async def test_one_tenants_slow_requests_do_not_open_the_circuit_for_another(
    fake: FakeOpenAI, gateway: Any, sdk: Any
) -> None:
    fake.then(hang(1.5), hang(1.5), hang(1.5))  # key A asks for more than 300 ms each
    extra = "\n    timeout: 10s\n    response_timeout: 300ms"
    gw = await gateway(config(fake.url, extra=extra, failures=2))
    tenant_a, tenant_b = sdk(gw, KEY_A), sdk(gw, KEY_B)
    for _ in range(3):
        with pytest.raises(openai.APIStatusError) as failed:
            await tenant_a.chat.completions.create(model="gpt-4o-mini", messages=HI)
        assert failed.value.status_code == 504
        assert failed.value.body["code"] == "upstream_timeout"  # type: ignore[index]
    assert await circuit(gw) == "closed"
    answer = await tenant_b.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert answer.choices[0].message.content == "echo from gpt-4o-mini"
    assert len(fake.seen) == 4
    metrics = await (await gw.get("/metrics")).text()
    assert 'llmgw_upstream_attempts_total{outcome="response_timeout",provider="up"} 3.0' in metrics


async def test_rate_limited_answers_do_not_open_the_circuit(
    fake: FakeOpenAI, gateway: Any, sdk: Any
) -> None:
    fake.then(*[reply_error(429, "slow down") for _ in range(3)])
    gw = await gateway(config(fake.url, failures=2))
    tenant_a, tenant_b = sdk(gw, KEY_A), sdk(gw, KEY_B)
    for _ in range(3):
        with pytest.raises(openai.APIStatusError):
            await tenant_a.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert await circuit(gw) == "closed"
    answer = await tenant_b.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert answer.choices[0].message.content == "echo from gpt-4o-mini"
    assert len(fake.seen) == 4


async def test_connection_refused_still_opens_the_circuit(gateway: Any, sdk: Any) -> None:
    gw = await gateway(config(f"http://127.0.0.1:{free_port()}/v1", failures=2))
    tenant_a, tenant_b = sdk(gw, KEY_A), sdk(gw, KEY_B)
    for _ in range(2):
        with pytest.raises(openai.APIStatusError) as failed:
            await tenant_a.chat.completions.create(model="gpt-4o-mini", messages=HI)
        assert failed.value.status_code == 502
    assert await circuit(gw) == "open"
    with pytest.raises(openai.APIStatusError) as skipped:
        await tenant_b.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert skipped.value.status_code == 503
    assert skipped.value.body["code"] == "no_provider_available"  # type: ignore[index]


async def test_a_connect_that_times_out_is_charged_even_for_a_long_answer(
    gateway: Any, sdk: Any
) -> None:
    port = free_port()
    with dropping_syns(port) as dropping:
        if not dropping:
            pytest.skip("127.0.0.2 has this port in use")
        extra = "\n    connect_timeout: 300ms\n    response_timeout: 20s"
        gw = await gateway(config(f"http://127.0.0.2:{port}/v1", extra=extra, failures=1))
        with pytest.raises(openai.APIStatusError) as failed:
            await sdk(gw, KEY_A).chat.completions.create(model="gpt-4o-mini", messages=HI)
        assert failed.value.status_code == 504
        assert await circuit(gw) == "open"
        metrics = await (await gw.get("/metrics")).text()
        assert 'outcome="connect_timeout",provider="up"} 1.0' in metrics


async def test_stream_slower_than_timeout_to_first_byte_falls_back_and_is_charged(
    make_fake: Any, gateway: Any, sdk: Any
) -> None:
    first, second = await make_fake(), await make_fake()
    first.then(hang(1.5))  # no head for 1.5 s: past the stream's time to first byte
    extra = "\n    timeout: 500ms\n    response_timeout: 20s"
    gw = await gateway(config(first.url, extra=extra, failures=1, fallback=second.url))
    chunks = await sdk(gw, KEY_A).chat.completions.create(model="chain", messages=HI, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
    assert text == "echo from gpt-4o-mini"
    assert len(first.seen) == 1 and len(second.seen) == 1
    assert await circuit(gw) == "open"


async def test_stream_within_timeout_is_not_bounded_by_response_timeout(
    fake: FakeOpenAI, gateway: Any, sdk: Any
) -> None:
    fake.then(reply_stream(chat_chunks(["a", "b", "c", "d"]), delay=0.15))
    extra = "\n    timeout: 5s\n    response_timeout: 200ms"
    gw = await gateway(config(fake.url, extra=extra))
    chunks = await sdk(gw, KEY_A).chat.completions.create(
        model="gpt-4o-mini", messages=HI, stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
    assert text == "abcd"


async def test_one_providers_clocks_follow_each_request_not_the_one_before(
    fake: FakeOpenAI, gateway: Any, sdk: Any
) -> None:
    """The whole-answer clocks are worked out once per provider, not per request: a
    stream, a whole answer, a stream again and a whole answer capped by its own
    x-gateway.timeout, on one provider, each get their own bound."""
    fake.then(hang(1.2), hang(1.2), hang(1.2), hang(1.2))
    extra = "\n    timeout: 400ms\n    response_timeout: 20s"
    gw = await gateway(config(fake.url, extra=extra, failures=10))
    client = sdk(gw, KEY_A)
    for stream in (True, False, True):
        if not stream:
            answer = await client.chat.completions.create(model="gpt-4o-mini", messages=HI)
            assert answer.choices[0].message.content == "Hello!"
            continue
        with pytest.raises(openai.APIStatusError) as late:
            await client.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True)
        assert late.value.status_code == 504
    with pytest.raises(openai.APIStatusError) as capped:
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=HI, extra_body={"x-gateway": {"timeout": "400ms"}}
        )
    assert capped.value.status_code == 504
    assert len(fake.seen) == 4


async def test_stream_silent_after_its_first_byte_is_charged(
    fake: FakeOpenAI, gateway: Any, sdk: Any
) -> None:
    never = asyncio.Event()  # the provider sends two events, then nothing
    fake.then(reply_stream(chat_chunks(["a", "b"]), gate=never, gate_after=2))
    extra = "\n    read_timeout: 300ms"
    gw = await gateway(config(fake.url, extra=extra, failures=1))
    response = await gw.post(
        "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": HI, "stream": True},
        headers={"Authorization": f"Bearer {KEY_A}"},
    )
    body = await response.read()
    assert response.status == 200 and b'"error"' in body and b"[DONE]" not in body
    assert await circuit(gw) == "open"
    metrics = await (await gw.get("/metrics")).text()
    assert 'llmgw_upstream_attempts_total{outcome="timeout",provider="up"} 1.0' in metrics


def test_the_timeouts_defaults_fit_reasoning_models_and_must_be_positive() -> None:
    provider = parse(config("http://127.0.0.1:1/v1"), environ={}).providers["up"]
    assert (provider.timeout, provider.read_timeout) == (30.0, 120.0)
    assert (provider.connect_timeout, provider.response_timeout) == (10.0, 600.0)
    for key in ("connect_timeout", "response_timeout"):
        with pytest.raises(ConfigError) as caught:
            parse(config("http://127.0.0.1:1/v1", extra=f"\n    {key}: 0s"), environ={})
        assert caught.value.errors == [
            f"gateway.yaml:9:{len(key) + 7}: providers.up.{key}: must be greater than 0"
        ]
