"""One provider, several client formats in turn: each request gets its own format's
stages (the adapter works them out once per endpoint, and keeps them), and a format
the provider cannot serve stays refused every time it is asked."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import CLIENT_KEY, claude_config
from tests.provider_fakes import FakeAnthropic

HI = [{"role": "user", "content": "hi"}]


async def test_each_client_format_keeps_its_own_stages_on_one_provider(
    claude: FakeAnthropic, gateway: Any, sdk: Any
) -> None:
    keys = f"auth:\n  keys:\n    - {{name: a, key: {CLIENT_KEY}}}\n"
    gw = await gateway(claude_config(claude.url, keys, model="claude-x"))
    chat = sdk(gw)
    messages = anthropic.AsyncAnthropic(
        base_url=str(gw.make_url("")), api_key=CLIENT_KEY, max_retries=0
    )
    try:
        for _ in range(2):  # the second round reads the stages the first one kept
            answer = await chat.chat.completions.create(model="claude-x", messages=HI)
            assert answer.object == "chat.completion"
            assert answer.choices[0].message.content == "echo: hi"
            message = await messages.messages.create(model="claude-x", max_tokens=9, messages=HI)
            assert message.type == "message" and message.content[0].type == "text"
            assert message.content[0].text == "echo: hi"
            with pytest.raises(openai.APIStatusError) as refused:
                await chat.embeddings.create(model="claude-x", input="hi")
            assert refused.value.status_code == 400
            assert "serves POST /v1/embeddings" in refused.value.message
    finally:
        await messages.close()
    assert len(claude.seen) == 4
