"""The built-in mock provider through the official SDK: chat, stream, completions, embeddings."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import openai
import pytest

MOCK = """
providers:
  demo:
    type: mock
    models: [echo, vectors]
    embedding_dimensions: 8
  slow:
    type: mock
    models: [slow-echo]
    latency: 100ms
    chunk_delay: 50ms
"""
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "one two three"}]


async def test_chat_echoes_last_user_message(gateway: Any, sdk: Any) -> None:
    client = sdk(await gateway(MOCK))
    completion = await client.chat.completions.create(model="echo", messages=MESSAGES)
    assert completion.choices[0].message.content == "one two three"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    again = await client.chat.completions.create(model="echo", messages=MESSAGES)
    assert again.choices[0].message.content == completion.choices[0].message.content


async def test_chat_stream_word_by_word_with_usage(gateway: Any, sdk: Any) -> None:
    client = sdk(await gateway(MOCK))
    stream = await client.chat.completions.create(
        model="echo", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert pieces == ["one ", "two ", "three"]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


async def test_n_choices_each_echo_streamed_too(gateway: Any, sdk: Any) -> None:
    client = sdk(await gateway(MOCK))
    completion = await client.chat.completions.create(model="echo", messages=MESSAGES, n=3)
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert {c.message.content for c in completion.choices} == {"one two three"}
    assert completion.usage is not None and completion.usage.completion_tokens == 9
    stream = await client.chat.completions.create(
        model="echo", messages=MESSAGES, n=2, stream=True, stream_options={"include_usage": True}
    )
    texts = ["", ""]
    finishes: list[str | None] = [None, None]
    async for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            finishes[choice.index] = choice.finish_reason or finishes[choice.index]
        if chunk.usage is not None:
            assert chunk.usage.completion_tokens == 6
    assert texts == ["one two three"] * 2 and finishes == ["stop"] * 2


async def test_n_out_of_range_is_a_clear_400(gateway: Any, sdk: Any) -> None:
    client = sdk(await gateway(MOCK))
    for n in (0, 129):
        with pytest.raises(openai.BadRequestError) as raised:
            await client.chat.completions.create(model="echo", messages=MESSAGES, n=n)
        assert "'n' must be an integer from 1 to 128" in raised.value.message


async def test_max_tokens_cuts_with_length(gateway: Any, sdk: Any) -> None:
    client = sdk(await gateway(MOCK))
    completion = await client.chat.completions.create(model="echo", messages=MESSAGES, max_tokens=2)
    assert completion.choices[0].message.content == "one two "
    assert completion.choices[0].finish_reason == "length"


async def test_completions_and_embeddings(gateway: Any, sdk: Any) -> None:
    client = sdk(await gateway(MOCK))
    completion = await client.completions.create(model="echo", prompt="say this")
    assert completion.choices[0].text == "say this"
    # The SDK asks for base64 by default and decodes it.
    vectors = await client.embeddings.create(model="vectors", input=["a", "b", "a"])
    assert [len(d.embedding) for d in vectors.data] == [8, 8, 8]
    assert vectors.data[0].embedding == vectors.data[2].embedding
    assert vectors.data[0].embedding != vectors.data[1].embedding
    assert abs(sum(v * v for v in vectors.data[0].embedding) - 1) < 1e-3
    floats = await client.embeddings.create(model="vectors", input="a", encoding_format="float")
    assert floats.data[0].embedding == vectors.data[0].embedding or all(
        abs(x - y) < 1e-6
        for x, y in zip(floats.data[0].embedding, vectors.data[0].embedding, strict=True)
    )


async def test_latency_and_chunk_delay_pace_the_stream(gateway: Any) -> None:
    gw = await gateway(MOCK)
    started = time.monotonic()
    response = await gw.post(
        "/v1/chat/completions",
        json={"model": "slow-echo", "messages": MESSAGES, "stream": True},
    )
    first = await response.content.readuntil(b"\n\n")
    first_at = time.monotonic() - started
    await response.read()
    total = time.monotonic() - started
    assert b"assistant" in first
    assert first_at >= 0.1  # latency before the first byte
    assert total >= 0.1 + 4 * 0.05  # four more events after the first, paced
    await asyncio.sleep(0)
