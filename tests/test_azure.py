"""Azure OpenAI: deployment URLs with api-version, the api-key header, pass-through."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from llmgw.adapter import Adapter
from llmgw.config import parse
from llmgw.core import Call
from tests.conftest import PROVIDER_KEY
from tests.fakes import reply_json
from tests.provider_fakes import FakeAzure, anthropic_client, serve

MESSAGES = [{"role": "user", "content": "Hi"}]


@pytest.fixture
async def azure(aiohttp_server: Any) -> FakeAzure:
    fake = FakeAzure()
    await serve(aiohttp_server, fake)
    return fake


def config(url: str, extra: str = "") -> str:
    return f"""
providers:
  az:
    type: azure
    base_url: {url}
    api_key: {PROVIDER_KEY}
    models: [my-gpt4o, my-embedder]{extra}
"""


async def test_chat_goes_to_the_deployment_with_api_key(
    azure: FakeAzure, gateway: Any, sdk: Any
) -> None:
    upstream = b'{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o",' + (
        b'"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},'
        b'"finish_reason":"stop","logprobs":null}],"usage":{"prompt_tokens":1,'
        b'"completion_tokens":1,"total_tokens":2}}'
    )
    azure.then(reply_json(upstream))
    gw = await gateway(config(azure.url))
    raw = await sdk(gw).chat.completions.with_raw_response.create(
        model="my-gpt4o", messages=MESSAGES
    )
    assert raw.http_response.content == upstream  # relayed byte for byte
    seen = azure.seen[0]
    assert seen.path == "/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"
    assert seen.headers["api-key"] == PROVIDER_KEY
    assert azure.problems == []  # no Authorization header, api-version present
    assert seen.body == {"model": "my-gpt4o", "messages": MESSAGES}


async def test_embeddings_and_configured_api_version(
    azure: FakeAzure, gateway: Any, sdk: Any
) -> None:
    vectors = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }
    azure.then(reply_json(vectors))
    gw = await gateway(config(azure.url, "\n    api_version: 2025-01-01-preview"))
    result = await sdk(gw).embeddings.create(
        model="my-embedder", input="a", encoding_format="float"
    )
    assert result.data[0].embedding == [0.1, 0.2]
    assert azure.seen[0].path == (
        "/openai/deployments/my-embedder/embeddings?api-version=2025-01-01-preview"
    )


async def test_anthropic_clients_are_served_through_chat(azure: FakeAzure, gateway: Any) -> None:
    gw = await gateway(config(azure.url))
    async with anthropic_client(gw) as client:
        message = await client.messages.create(
            model="my-gpt4o", max_tokens=10, messages=[{"role": "user", "content": "Hi"}]
        )
    assert message.content[0].text == "from my-gpt4o"  # type: ignore[union-attr]
    assert azure.seen[0].path.startswith("/openai/deployments/my-gpt4o/chat/completions?")


def test_request_shape_and_key_requirement() -> None:
    provider = parse(
        "providers:\n  az: {type: azure, base_url: 'https://res.openai.azure.com', api_key: k}\n",
        environ={},
    ).providers["az"]
    adapter = Adapter.of("azure")
    call = Call("completions", "d", False, {"model": "d", "prompt": "x"}, b'{"model":"d"}')
    request = adapter.request(call, "my deployment", provider)
    assert request.url == (
        "https://res.openai.azure.com/openai/deployments/my%20deployment/completions"
        "?api-version=2024-10-21"
    )
    assert request.headers == {"Content-Type": "application/json", "api-key": "k"}
    assert orjson.loads(request.body)["model"] == "my deployment"
    assert adapter.needs_key(provider)
