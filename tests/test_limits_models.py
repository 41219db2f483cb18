"""``limits.models`` holds for the provider model, whatever name the client used:
``gpt-4o``, ``openai/gpt-4o`` or an alias leading to it, on both backends."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import PROVIDER_KEY
from tests.fakes import FakeOpenAI

MESSAGES = [{"role": "user", "content": "limit me"}]


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    """The ``limits:`` backend settings: this process's memory, or a real Redis."""
    if request.param == "memory":
        return "backend: memory"
    return f"backend: redis\n  redis_url: {request.getfixturevalue('redis_url')}"


def config(url: str, backend: str, models: str) -> str:
    """Two providers on one fake: ``openai`` serves gpt-4o, ``other`` gpt-4o-mini and
    gpt-4o; aliases lead to them."""
    return f"""
providers:
  openai: {{type: openai, base_url: "{url}", api_key: {PROVIDER_KEY}, models: [gpt-4o], max_retries: 0}}
  other: {{type: openai, base_url: "{url}", api_key: {PROVIDER_KEY}, models: [gpt-4o-mini, gpt-4o], max_retries: 0}}
models:
  smart: [openai/gpt-4o]
  chain: [other/gpt-4o-mini, openai/gpt-4o]
limits:
  {backend}
  models:
{models}"""


async def ask(gw: Any, model: str) -> Any:
    response = await gw.post("/v1/chat/completions", json={"model": model, "messages": MESSAGES})
    await response.read()
    return response


async def test_every_name_of_a_model_shares_its_limit(
    fake: FakeOpenAI, gateway: Any, backend: str
) -> None:
    gw = await gateway(config(fake.url, backend, "    gpt-4o: {rpm: 3}"))
    answers = [await ask(gw, name) for name in ("gpt-4o", "openai/gpt-4o", "smart")]
    assert [r.status for r in answers] == [200, 200, 200]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in answers] == ["2", "1", "0"]
    for name in ("gpt-4o", "openai/gpt-4o", "smart", "other/gpt-4o"):
        refused = await ask(gw, name)
        assert refused.status == 429, name
        assert "model 'gpt-4o'" in (await refused.json())["error"]["message"]
    assert len(fake.seen) == 3  # a refusal never went upstream
    assert (await ask(gw, "gpt-4o-mini")).status == 200  # another model: its own business


async def test_a_provider_qualified_entry_limits_that_provider_only(
    fake: FakeOpenAI, gateway: Any, backend: str
) -> None:
    gw = await gateway(config(fake.url, backend, "    openai/gpt-4o: {rpm: 2}"))
    assert (await ask(gw, "smart")).status == 200
    assert (await ask(gw, "openai/gpt-4o")).status == 200
    assert (await ask(gw, "gpt-4o")).status == 429  # its targets include openai/gpt-4o
    assert (await ask(gw, "openai/gpt-4o")).status == 429
    other = await ask(gw, "other/gpt-4o")
    assert other.status == 200 and "x-ratelimit-limit-requests" not in other.headers


async def test_a_fallback_chain_counts_against_every_limited_model_once(
    fake: FakeOpenAI, gateway: Any, backend: str
) -> None:
    limits = "    gpt-4o: {rpm: 3}\n    gpt-4o-mini: {rpm: 1}\n    openai/gpt-4o: {rpm: 3}"
    gw = await gateway(config(fake.url, backend, limits))
    first = await ask(gw, "chain")
    assert first.status == 200
    assert first.headers["X-LLMGW-Provider"] == "other"  # answered by the first target
    assert first.headers["x-ratelimit-remaining-requests"] == "0"  # gpt-4o-mini's
    assert (await ask(gw, "gpt-4o-mini")).status == 429
    second = await ask(gw, "openai/gpt-4o")  # gpt-4o and openai/gpt-4o: each charged once
    assert second.status == 200 and second.headers["x-ratelimit-remaining-requests"] == "1"
    assert (await ask(gw, "chain")).status == 429  # gpt-4o-mini has nothing left
    assert len(fake.seen) == 2


async def test_an_alias_entry_limits_requests_to_the_alias(
    fake: FakeOpenAI, gateway: Any, backend: str
) -> None:
    gw = await gateway(config(fake.url, backend, "    smart: {rpm: 1}"))
    assert (await ask(gw, "smart")).status == 200
    assert (await ask(gw, "smart")).status == 429
    direct = await ask(gw, "openai/gpt-4o")
    assert direct.status == 200 and "x-ratelimit-limit-requests" not in direct.headers
