"""Shared fixtures: fake providers on 127.0.0.1 and the real gateway in front of them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import openai
import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import settings

from llmgw.app import create_app
from llmgw.config import parse
from llmgw.server.lifecycle import handler_options
from tests.fakes import FakeOpenAI

if TYPE_CHECKING:
    from tests.provider_fakes import FakeAnthropic
from tests.redis_relay import ScriptRelay
from tests.redis_server import redis_server

GatewayFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
Serve = Callable[[str], Awaitable[TestClient[Any, Any]]]

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


@pytest.fixture
async def redis_relay(redis_url: str) -> AsyncIterator[ScriptRelay]:
    """A relay in front of the session's redis-server that meddles with one script call
    (``tests/redis_relay.py``)."""
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    relay = ScriptRelay(port)
    await relay.start()
    yield relay
    await relay.close()


def one_provider(url: str, **settings: Any) -> str:
    """A config with one OpenAI-compatible provider ``up`` serving gpt-4o-mini."""
    return provider_config(url, "up", "openai", "gpt-4o-mini", **settings)


def claude_config(url: str, extra: str = "", model: str = "claude-haiku-4-5") -> str:
    """A config with one Anthropic provider ``claude`` serving ``model``, no retries,
    then ``extra`` (more YAML at the top level)."""
    return provider_config(url, "claude", "anthropic", model, max_retries=0) + extra


def provider_config(url: str, name: str, kind: str, model: str, **settings: Any) -> str:
    """``providers:`` with the one provider ``name`` of type ``kind`` at ``url``,
    serving ``model``, with ``settings`` (``key=value`` lines under it)."""
    extra = "".join(f"\n    {k}: {v}" for k, v in settings.items())
    return f"""
providers:
  {name}:
    type: {kind}
    base_url: {url}
    api_key: {PROVIDER_KEY}
    models: [{model}]{extra}
"""


@pytest.fixture
async def claude(aiohttp_server: Any) -> FakeAnthropic:
    """The fake Anthropic API on 127.0.0.1."""
    from tests.provider_fakes import FakeAnthropic, serve  # it imports this module

    fake = FakeAnthropic()
    await serve(aiohttp_server, fake)
    return fake


@pytest.fixture
async def serve(aiohttp_client: Any) -> Serve:
    """The gateway on a config text with ``handler_cancellation=True``, as in production:
    a client that leaves cancels its handler (and the upstream call)."""

    async def start(text: str) -> TestClient[Any, Any]:
        app = create_app(parse(text, environ={}))
        client: TestClient[Any, Any] = await aiohttp_client(
            app, server_kwargs={"handler_cancellation": True}
        )
        return client

    return start
