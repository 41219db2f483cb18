"""Shared fixtures: fake providers on 127.0.0.1 and the real gateway in front of them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import openai
import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import settings

from llmgw.app import create_app
from llmgw.config import parse
from llmgw.server.lifecycle import handler_options
from tests.fakes import FakeOpenAI
from tests.redis_server import redis_server

GatewayFactory = Callable[..., Awaitable[TestClient[Any, Any]]]

# In CI every property test draws the same examples, so a red run can be reproduced;
# locally each run explores new ones (LLMGW_FUZZ_EXAMPLES raises the counts).
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

PROVIDER_KEY = "sk-provider-secret-0123456789"
CLIENT_KEY = "sk-client-secret-9876543210"


@pytest.fixture
async def make_fake(aiohttp_server: Any) -> Callable[[], Awaitable[FakeOpenAI]]:
    async def make() -> FakeOpenAI:
        fake = FakeOpenAI()
        server = await aiohttp_server(fake.app())
        fake.url = str(server.make_url("/v1"))
        return fake

    return make


@pytest.fixture
async def fake(make_fake: Callable[[], Awaitable[FakeOpenAI]]) -> FakeOpenAI:
    return await make_fake()


@pytest.fixture
async def gateway(aiohttp_client: Any) -> GatewayFactory:
    """Start the real gateway app on a config text, served on 127.0.0.1."""

    async def start(text: str, environ: dict[str, str] | None = None) -> Any:
        config = parse(text, environ=environ or {})
        server = TestServer(create_app(config))
        await server.start_server(**handler_options())  # as `llmgw` serves (lifecycle.serve)
        return await aiohttp_client(server)

    return start


@pytest.fixture
async def sdk() -> AsyncIterator[Callable[[TestClient[Any, Any]], openai.AsyncOpenAI]]:
    """The official OpenAI SDK pointed at a gateway, with retries off."""
    clients: list[openai.AsyncOpenAI] = []

    def make(gw: TestClient[Any, Any], api_key: str = CLIENT_KEY) -> openai.AsyncOpenAI:
        client = openai.AsyncOpenAI(
            base_url=str(gw.make_url("/v1")), api_key=api_key, max_retries=0
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One throwaway redis-server for the session (skips where none is installed)."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    """The session's redis-server, emptied for this test."""
    client = redis.Redis.from_url(redis_server_url)
    client.flushall()
    client.close()
    return redis_server_url


def one_provider(url: str, **settings: Any) -> str:
    """A config with one OpenAI-compatible provider ``up`` serving gpt-4o-mini."""
    extra = "".join(f"\n    {k}: {v}" for k, v in settings.items())
    return f"""
providers:
  up:
    type: openai
    base_url: {url}
    api_key: {PROVIDER_KEY}
    models: [gpt-4o-mini]{extra}
"""
