"""Fallback chains, retries and the circuit breaker (SPEC §2)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from tests.conftest import PROVIDER_KEY
from tests.fakes import (
    FakeOpenAI,
    chat_chunks,
    drop_connection,
    free_port,
    hang,
    reply_error,
    reply_stream,
    wait_for,
)

BODY = {"model": "chain", "messages": [{"role": "user", "content": "hi"}]}


def chain(first: str, second: str, *, first_extra: str = "", routing: str = "") -> str:
    return f"""
providers:
  first:
    type: openai
    base_url: {first}
    api_key: {PROVIDER_KEY}
    max_retries: 0{first_extra}
  second:
    type: openai
    base_url: {second}
    api_key: {PROVIDER_KEY}
    max_retries: 0
models:
  chain: [first/model-a, second/model-b]
{routing}
"""


async def test_falls_back_on_503(make_fake: Any, gateway: Any) -> None:
    first, second = await make_fake(), await make_fake()
    first.then(reply_error(503))
    gw = await gateway(chain(first.url, second.url))
    response = await gw.post("/v1/chat/completions", json=BODY)
    assert response.status == 200
    assert response.headers["X-LLMGW-Provider"] == "second"
    assert response.headers["X-LLMGW-Model"] == "model-b"
    assert response.headers["X-LLMGW-Attempts"] == "2"
    assert (await response.json())["model"] == "model-b"
    assert len(first.seen) == 1 and len(second.seen) == 1


async def test_falls_back_when_first_hangs_past_timeout(make_fake: Any, gateway: Any) -> None:
    first, second = await make_fake(), await make_fake()
    first.then(hang(10))
    extra = "\n    response_timeout: 200ms"
    gw = await gateway(chain(first.url, second.url, first_extra=extra))
    response = await gw.post("/v1/chat/completions", json=BODY)
    assert response.status == 200
    assert response.headers["X-LLMGW-Provider"] == "second"


async def test_falls_back_on_connection_refused(fake: FakeOpenAI, gateway: Any) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    gw = await gateway(chain(dead, fake.url))
    response = await gw.post("/v1/chat/completions", json=BODY)
    assert response.status == 200
    assert response.headers["X-LLMGW-Provider"] == "second"


async def test_falls_back_on_connection_reset(make_fake: Any, gateway: Any) -> None:
    first, second = await make_fake(), await make_fake()
    first.then(drop_connection())
    gw = await gateway(chain(first.url, second.url))
    response = await gw.post("/v1/chat/completions", json=BODY)
    assert response.status == 200
    assert response.headers["X-LLMGW-Provider"] == "second"


async def test_falls_back_on_stream_whose_first_event_is_an_error(
    make_fake: Any, gateway: Any
) -> None:
    first, second = await make_fake(), await make_fake()
    error_event = b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'
    first.then(reply_stream([b": keep-alive\n\n", error_event]))
    gw = await gateway(chain(first.url, second.url))
    response = await gw.post("/v1/chat/completions", json={**BODY, "stream": True})
    body = await response.read()
    assert response.status == 200
    assert response.headers["X-LLMGW-Provider"] == "second"
    assert b"overloaded" not in body
    assert body.endswith(b"data: [DONE]\n\n")


async def test_no_fallback_on_400(make_fake: Any, gateway: Any) -> None:
    first, second = await make_fake(), await make_fake()
    first.then(reply_error(400, "context_length_exceeded: too long"))
    gw = await gateway(chain(first.url, second.url))
    response = await gw.post("/v1/chat/completions", json=BODY)
    assert response.status == 400
    assert (await response.json())["error"]["message"] == "context_length_exceeded: too long"
    assert second.seen == []


async def test_provider_401_everywhere_becomes_502_without_provider_text(
    make_fake: Any, gateway: Any
) -> None:
    first, second = await make_fake(), await make_fake()
    leaked = f"Incorrect API key provided: {PROVIDER_KEY}"
    first.then(reply_error(401, leaked))
    second.then(reply_error(403, "forbidden for this org"))
    gw = await gateway(chain(first.url, second.url))
    response = await gw.post("/v1/chat/completions", json=BODY)
    text = await response.text()
    assert response.status == 502
    error = orjson.loads(text)["error"]
    assert error["type"] == "api_error" and error["code"] == "upstream_error"
    assert PROVIDER_KEY not in text and "Incorrect API key" not in text
    assert "forbidden for this org" not in text


async def test_every_target_timing_out_is_504(make_fake: Any, gateway: Any) -> None:
    first, second = await make_fake(), await make_fake()
    first.then(hang(10))
    second.then(hang(10))
    config = chain(first.url, second.url, first_extra="\n    response_timeout: 100ms").replace(
        "max_retries: 0\nmodels", "max_retries: 0\n    response_timeout: 100ms\nmodels"
    )
    gw = await gateway(config)
    response = await gw.post("/v1/chat/completions", json=BODY)
    assert response.status == 504
    assert (await response.json())["error"]["code"] == "upstream_timeout"


async def test_retries_honour_retry_after_then_succeed(fake: FakeOpenAI, gateway: Any) -> None:
    fake.then(reply_error(429, **{"Retry-After": "0.2"}))
    config = f"""
providers:
  only:
    type: openai
    base_url: {fake.url}
    api_key: k
    models: [m]
    max_retries: 2
"""
    gw = await gateway(config)
    response = await gw.post("/v1/chat/completions", json={**BODY, "model": "m"})
    assert response.status == 200
    assert response.headers["X-LLMGW-Attempts"] == "2"
    assert len(fake.seen) == 2


async def test_max_retries_bounds_attempts(fake: FakeOpenAI, gateway: Any) -> None:
    fake.default = reply_error(500)
    config = f"""
providers:
  only: {{type: openai, base_url: "{fake.url}", api_key: k, models: [m], max_retries: 2}}
"""
    gw = await gateway(config)
    response = await gw.post("/v1/chat/completions", json={**BODY, "model": "m"})
    assert response.status == 502
    assert len(fake.seen) == 3
    assert response.headers["X-LLMGW-Attempts"] == "3"


async def test_circuit_opens_then_lets_one_trial_through(make_fake: Any, gateway: Any) -> None:
    first, second = await make_fake(), await make_fake()
    first.default = reply_error(500)
    routing = "routing:\n  circuit_breaker: {failures: 2, cooldown: 300ms}"
    gw = await gateway(chain(first.url, second.url, routing=routing))
    for _ in range(2):
        assert (await gw.post("/v1/chat/completions", json=BODY)).status == 200
    assert len(first.seen) == 2
    # Open: the first provider is skipped entirely.
    for _ in range(3):
        response = await gw.post("/v1/chat/completions", json=BODY)
        assert response.headers["X-LLMGW-Attempts"] == "1"
    assert len(first.seen) == 2
    status = await (await gw.get("/api/v1/providers/status")).json()
    assert status["providers"]["first"]["circuit"] == "open"
    metrics = await (await gw.get("/metrics")).text()
    assert 'llmgw_circuit_state{provider="first"} 1.0' in metrics

    # After the cooldown one trial goes through; it succeeds and closes the circuit.
    first.default = first.echo
    await asyncio.sleep(0.35)
    response = await gw.post("/v1/chat/completions", json=BODY)
    assert response.headers["X-LLMGW-Provider"] == "first"
    status = await (await gw.get("/api/v1/providers/status")).json()
    assert status["providers"]["first"]["circuit"] == "closed"


async def test_all_providers_disabled_is_503(gateway: Any) -> None:
    config = """
providers:
  openai: {type: openai, api_key: "", models: [gpt-4o]}
"""
    gw = await gateway(config)
    response = await gw.post("/v1/chat/completions", json={**BODY, "model": "gpt-4o"})
    assert response.status == 503
    error = (await response.json())["error"]
    assert error["code"] == "no_provider_available" and error["type"] == "api_error"
    assert (await gw.get("/ready")).status == 503


async def test_disabled_provider_is_skipped_in_chain(fake: FakeOpenAI, gateway: Any) -> None:
    config = f"""
providers:
  off: {{type: openai, api_key: "${{MISSING_KEY:-}}", models: [m]}}
  on: {{type: openai, base_url: "{fake.url}", models: [m]}}
"""
    gw = await gateway(config)
    response = await gw.post("/v1/chat/completions", json={**BODY, "model": "m"})
    assert response.status == 200
    assert response.headers["X-LLMGW-Provider"] == "on"
    assert "Authorization" not in fake.seen[0].headers


@pytest.mark.parametrize("fallback_on", ["[503]", "[connect_error]"])
async def test_fallback_on_list_is_honoured(make_fake: Any, gateway: Any, fallback_on: str) -> None:
    first, second = await make_fake(), await make_fake()
    first.then(reply_error(502, "bad gateway upstream"))
    routing = f"routing:\n  fallback_on: {fallback_on}"
    gw = await gateway(chain(first.url, second.url, routing=routing))
    response = await gw.post("/v1/chat/completions", json=BODY)
    assert response.status == 502
    assert second.seen == []
    assert "bad gateway upstream" not in await response.text()


async def test_max_concurrency_queues_then_falls_back(make_fake: Any, gateway: Any) -> None:
    first, second = await make_fake(), await make_fake()
    # The first request holds the only slot with a slow stream; the second cannot get
    # a slot within `timeout` and moves on to the next target.
    first.then(reply_stream(chat_chunks(["a", "b", "c"]), delay=0.15))
    extra = "\n    max_concurrency: 1\n    timeout: 200ms"
    gw = await gateway(chain(first.url, second.url, first_extra=extra))
    slow = asyncio.ensure_future(gw.post("/v1/chat/completions", json={**BODY, "stream": True}))
    await wait_for(lambda: len(first.seen) == 1)
    response = await gw.post("/v1/chat/completions", json=BODY)
    assert response.headers["X-LLMGW-Provider"] == "second"
    assert len(first.seen) == 1
    assert (await (await slow).read()).endswith(b"[DONE]\n\n")


async def test_first_event_check_skips_keepalive_comments(fake: FakeOpenAI, gateway: Any) -> None:
    chunks = [b": PROCESSING\n\n", *chat_chunks(["ok"])]
    fake.then(reply_stream(chunks))
    config = f"""
providers:
  only: {{type: openai, base_url: "{fake.url}", models: [m]}}
"""
    gw = await gateway(config)
    response = await gw.post("/v1/chat/completions", json={**BODY, "model": "m", "stream": True})
    assert await response.read() == b"".join(chunks)
