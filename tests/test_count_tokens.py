"""``POST /v1/messages/count_tokens`` with the official anthropic SDK: relayed to an
Anthropic provider (the others in its chain skipped), estimated by the gateway for a
model that has no Anthropic target."""

from __future__ import annotations

from typing import Any

import anthropic
import orjson
import pytest
from aiohttp import web

from tests.conftest import PROVIDER_KEY
from tests.provider_fakes import anthropic_client

MESSAGES: list[Any] = [{"role": "user", "content": "Weather in Paris? " * 10}]


@pytest.fixture
async def counter(aiohttp_server: Any) -> tuple[str, list[Any]]:
    seen: list[Any] = []

    async def count(request: web.Request) -> web.Response:
        seen.append((request.path, dict(request.headers), orjson.loads(await request.read())))
        return web.json_response({"input_tokens": 4242})

    app = web.Application()
    app.router.add_post("/v1/messages/count_tokens", count)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/"), seen


def config(url: str) -> str:
    return f"""
providers:
  demo: {{type: mock, models: [echo]}}
  claude: {{type: anthropic, base_url: {url}, api_key: {PROVIDER_KEY}, models: [claude-x]}}
models:
  counted: [demo/echo, claude/claude-x]
"""


async def test_relayed_to_anthropic_past_other_types(
    counter: tuple[str, list[Any]], gateway: Any
) -> None:
    url, seen = counter
    gw = await gateway(config(url))
    async with anthropic_client(gw) as client:
        counted = await client.messages.count_tokens(
            model="counted", messages=MESSAGES, system="Be brief."
        )
    assert counted.input_tokens == 4242
    path, headers, body = seen[0]
    assert path == "/v1/messages/count_tokens"
    assert headers["x-api-key"] == PROVIDER_KEY
    assert body["model"] == "claude-x" and body["system"] == "Be brief."


async def test_estimated_where_no_target_is_anthropic(gateway: Any) -> None:
    gw = await gateway("providers:\n  demo: {type: mock, models: [echo]}\n")
    async with anthropic_client(gw) as client:
        counted = await client.messages.count_tokens(model="echo", messages=MESSAGES)
        longer = await client.messages.count_tokens(
            model="echo",
            messages=MESSAGES,
            tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
        )
    assert counted.input_tokens == (len(MESSAGES[0]["content"]) + 3) // 4
    assert longer.input_tokens > counted.input_tokens


async def test_bad_requests_answer_in_anthropic_shape(gateway: Any) -> None:
    gw = await gateway("providers:\n  demo: {type: mock, models: [echo]}\n")
    async with anthropic_client(gw) as client:
        with pytest.raises(anthropic.BadRequestError) as refused:
            await client.messages.count_tokens(model="echo", messages=[])
        with pytest.raises(anthropic.NotFoundError):
            await client.messages.count_tokens(model="nope", messages=MESSAGES)
    assert refused.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
