"""The header lines of a provider's requests are rendered once and kept while they
stay the same: whatever differs (a client's anthropic-beta) is sent as asked on every
request, and a header that cannot be written is refused every time it is tried."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.conftest import CLIENT_KEY, PROVIDER_KEY, claude_config
from tests.fakes import FakeOpenAI
from tests.provider_fakes import FakeAnthropic, anthropic_client

HI = [{"role": "user", "content": "hi"}]


async def test_each_request_carries_its_own_beta_header(
    claude: FakeAnthropic, gateway: Any
) -> None:
    gw = await gateway(claude_config(claude.url))
    asked = ["x", "x", "y", None, "x"]
    async with anthropic_client(gw) as client:
        for beta in asked:
            headers = {} if beta is None else {"anthropic-beta": beta}
            message = await client.messages.create(
                model="claude-haiku-4-5", max_tokens=9, messages=HI, extra_headers=headers
            )
            assert message.content[0].type == "text"
    assert [seen.headers.get("anthropic-beta") for seen in claude.seen] == asked
    assert {seen.headers["x-api-key"] for seen in claude.seen} == {PROVIDER_KEY}


async def test_a_header_with_a_line_break_is_refused_every_time(
    fake: FakeOpenAI, gateway: Any, sdk: Any
) -> None:
    gw = await gateway(
        f"""
providers:
  bad:
    type: openai
    base_url: {fake.url}
    api_key: {PROVIDER_KEY}
    models: [m-bad]
    max_retries: 0
    headers: {{X-Team: "a\\r\\nX-Injected: 1"}}
  good:
    type: openai
    base_url: {fake.url}
    api_key: {PROVIDER_KEY}
    models: [m-good]
    max_retries: 0
    headers: {{X-Team: b}}
routing:
  circuit_breaker: {{failures: 100, cooldown: 60s}}
auth:
  keys:
    - {{name: a, key: {CLIENT_KEY}}}
"""
    )
    client = sdk(gw)
    for _ in range(2):
        with pytest.raises(openai.APIStatusError) as refused:
            await client.chat.completions.create(model="m-bad", messages=HI)
        assert refused.value.status_code == 502
        answer = await client.chat.completions.create(model="m-good", messages=HI)
        assert answer.choices[0].message.content
    assert len(fake.seen) == 2
    assert all(seen.headers.get("X-Team") == "b" for seen in fake.seen)
    assert not any("X-Injected" in seen.headers for seen in fake.seen)
