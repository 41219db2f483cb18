"""Anthropic providers end to end: the official openai SDK through /v1/chat/completions
(translated), the official anthropic SDK through /v1/messages (relayed byte for byte),
and fallback chains that cross formats."""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest

from tests.conftest import PROVIDER_KEY, claude_config
from tests.fakes import FakeOpenAI, reply_json, wait_for
from tests.provider_fakes import (
    FakeAnthropic,
    anthropic_client,
    anthropic_error,
    fixture,
    pieces,
    reply_sse,
    serve,
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["location"],
        },
    },
}
ASK = [{"role": "user", "content": "What's the weather in San Francisco?"}]


# The openai SDK in front of Anthropic ----------------------------------------------


async def test_openai_sdk_gets_tool_calls_finish_reason_and_usage(
    claude: FakeAnthropic, gateway: Any, sdk: Any
) -> None:
    claude.then(reply_json(fixture("anthropic/message_tool_use.json")))
    gw = await gateway(claude_config(claude.url))
    raw = await sdk(gw).chat.completions.with_raw_response.create(
        model="claude-haiku-4-5", messages=ASK, tools=[WEATHER], max_tokens=300
    )
    completion = raw.parse()
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "I'll check the weather in San Francisco."
    call = (choice.message.tool_calls or [])[0]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert orjson.loads(call.function.arguments) == {  # type: ignore[union-attr]
        "location": "San Francisco, CA",
        "unit": "celsius",
    }
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (484, 74)
    assert raw.headers["X-LLMGW-Provider"] == "claude"

    seen = claude.seen[0]
    assert claude.problems == []
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == PROVIDER_KEY
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.body["max_tokens"] == 300
    assert seen.body["tools"][0]["input_schema"] == WEATHER["function"]["parameters"]  # type: ignore[index]


async def test_openai_sdk_stream_with_usage(claude: FakeAnthropic, gateway: Any, sdk: Any) -> None:
    claude.then(reply_sse(fixture("anthropic/stream_text.sse"), size=7))  # events cut anywhere
    gw = await gateway(claude_config(claude.url))
    stream = await sdk(gw).chat.completions.create(
        model="claude-haiku-4-5",
        messages=ASK,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello, wörld!"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (25, 15)
    assert claude.seen[0].body["stream"] is True
    assert claude.problems == []


async def test_openai_sdk_stream_assembles_streamed_tool_arguments(
    claude: FakeAnthropic, gateway: Any, sdk: Any
) -> None:
    claude.then(reply_sse(fixture("anthropic/stream_tool_use.sse"), size=13))
    gw = await gateway(claude_config(claude.url))
    stream = await sdk(gw).chat.completions.create(
        model="claude-haiku-4-5", messages=ASK, tools=[WEATHER], stream=True
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    async for chunk in stream:
        assert chunk.usage is None  # the client did not ask for it
        for delta_call in chunk.choices[0].delta.tool_calls or []:
            slot = calls.setdefault(delta_call.index, {"id": "", "name": "", "args": ""})
            slot["id"] = delta_call.id or slot["id"]
            if delta_call.function is not None:
                slot["name"] += delta_call.function.name or ""
                slot["args"] += delta_call.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert calls[0]["id"] == "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    assert calls[0]["name"] == "get_weather"
    assert orjson.loads(calls[0]["args"]) == {"location": "San Francisco, CA", "unit": "fahrenheit"}
    assert (calls[1]["name"], orjson.loads(calls[1]["args"])) == ("get_time", {"tz": "PST"})


async def test_a_tool_conversation_is_accepted_by_anthropic(
    claude: FakeAnthropic, gateway: Any, sdk: Any
) -> None:
    gw = await gateway(claude_config(claude.url))
    conversation = [
        {"role": "system", "content": "You are terse."},
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location": "SF"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Foggy, 15C"},
        {"role": "user", "content": "And in short?"},
    ]
    completion = await sdk(gw).chat.completions.create(
        model="claude-haiku-4-5", messages=conversation, tools=[WEATHER]
    )
    assert claude.problems == []
    assert completion.choices[0].message.content == "echo: Foggy, 15C And in short?"
    assert claude.seen[0].body["system"] == "You are terse."


async def test_anthropic_client_errors_reach_openai_clients_in_openai_shape(
    claude: FakeAnthropic, gateway: Any, sdk: Any
) -> None:
    claude.then(anthropic_error(400, "invalid_request_error", "prompt is too long"))
    gw = await gateway(claude_config(claude.url))
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(gw).chat.completions.create(model="claude-haiku-4-5", messages=ASK)
    assert caught.value.status_code == 400
    assert caught.value.body == {
        "message": "prompt is too long",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


# The anthropic SDK through /v1/messages: relayed unchanged --------------------------


async def test_anthropic_sdk_gets_upstream_json_bytes(claude: FakeAnthropic, gateway: Any) -> None:
    upstream = fixture("anthropic/message_text.json").replace(
        b'"type":"message"', b'"type": "message"'
    )
    claude.then(reply_json(upstream))
    gw = await gateway(claude_config(claude.url))
    async with anthropic_client(gw) as client:
        raw = await client.messages.with_raw_response.create(
            model="claude-haiku-4-5",
            max_tokens=64,
            messages=[{"role": "user", "content": "Hello"}],
            extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"},
        )
    assert raw.http_response.content == upstream
    message = await raw.parse()
    assert message.content[0].text == "Hello! How can I help you today?"  # type: ignore[union-attr]
    seen = claude.seen[0]
    assert seen.headers["x-api-key"] == PROVIDER_KEY  # the provider's key, not the client's
    # The client's own API version and beta flags are passed on.
    client_version = raw.http_response.request.headers["anthropic-version"]
    assert seen.headers["anthropic-version"] == client_version
    assert seen.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert seen.body == {
        "model": "claude-haiku-4-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Hello"}],
    }


async def test_anthropic_sdk_gets_upstream_stream_bytes_and_usage_is_counted(
    claude: FakeAnthropic, gateway: Any, caplog: Any
) -> None:
    caplog.set_level("INFO", logger="llmgw.access")
    data = fixture("anthropic/stream_tool_use.sse")
    claude.then(reply_sse(data, size=50), reply_sse(data))
    gw = await gateway(claude_config(claude.url))
    request = {
        "model": "claude-haiku-4-5",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Weather?"}],
    }
    async with anthropic_client(gw) as client:
        async with client.messages.with_streaming_response.create(
            **request, stream=True
        ) as response:
            received = b"".join([part async for part in response.iter_bytes()])
        assert received == data
        async with client.messages.stream(**request) as stream:
            final = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[1].input == {"location": "San Francisco, CA", "unit": "fahrenheit"}  # type: ignore[union-attr]
    assert (final.usage.input_tokens, final.usage.output_tokens) == (472, 89)
    await wait_for(lambda: sum(r.name == "llmgw.access" for r in caplog.records) >= 2)
    record = next(r for r in caplog.records if r.name == "llmgw.access")
    assert (record.prompt_tokens, record.completion_tokens) == (472, 89)


async def test_anthropic_error_first_in_stream_falls_back(
    gateway: Any, aiohttp_server: Any
) -> None:
    first, second = FakeAnthropic(), FakeAnthropic()
    await serve(aiohttp_server, first)
    await serve(aiohttp_server, second)
    first.then(reply_sse(fixture("anthropic/stream_error_first.sse")))
    second.then(reply_sse(fixture("anthropic/stream_text.sse")))
    config = (
        claude_config(first.url)
        + f"""  backup:
    type: anthropic
    base_url: {second.url}
    api_key: {PROVIDER_KEY}
models:
  chain: [claude/claude-haiku-4-5, backup/claude-haiku-4-5]
"""
    )
    gw = await gateway(config)
    async with (
        anthropic_client(gw) as client,
        client.messages.with_streaming_response.create(
            model="chain", max_tokens=10, messages=[{"role": "user", "content": "x"}], stream=True
        ) as response,
    ):
        assert response.headers["X-LLMGW-Provider"] == "backup"
        received = b"".join([part async for part in response.iter_bytes()])
    assert received == fixture("anthropic/stream_text.sse")
    assert second.seen[0].body["model"] == "claude-haiku-4-5"


# Fallback across formats: Anthropic overloaded (529) → an OpenAI provider ------------


async def chain(claude: FakeAnthropic, gpt: FakeOpenAI, gateway: Any) -> Any:
    claude.then(*[anthropic_error(529, "overloaded_error", "Overloaded")] * 4)
    return await gateway(
        claude_config(
            claude.url,
            f"""  gpt:
    type: openai
    base_url: {gpt.url}
    api_key: {PROVIDER_KEY}
    models: [gpt-4o-mini]
models:
  smart: [claude/claude-haiku-4-5, gpt/gpt-4o-mini]
""",
        )
    )


async def test_cross_format_fallback_answers_anthropic_clients_in_anthropic_format(
    claude: FakeAnthropic, fake: FakeOpenAI, gateway: Any
) -> None:
    gw = await chain(claude, fake, gateway)
    ask = {
        "model": "smart",
        "max_tokens": 50,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hi"}],
    }
    async with anthropic_client(gw) as client:
        raw = await client.messages.with_raw_response.create(**ask)
        message = await raw.parse()
        assert raw.headers["X-LLMGW-Provider"] == "gpt"
        assert raw.headers["X-LLMGW-Attempts"] == "2"
        assert message.type == "message" and message.role == "assistant"
        assert message.content[0].text == "echo from gpt-4o-mini"  # type: ignore[union-attr]
        assert message.stop_reason == "end_turn"
        assert (message.usage.input_tokens, message.usage.output_tokens) == (9, 3)

        async with client.messages.stream(**ask) as stream:
            text = "".join([piece async for piece in stream.text_stream])
            final = await stream.get_final_message()
    assert text == "echo from gpt-4o-mini"
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (9, 3)
    sent = fake.seen[0].body
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert sent["max_tokens"] == 50
    assert fake.seen[1].body["stream_options"] == {"include_usage": True}


async def test_cross_format_fallback_answers_openai_clients_in_openai_format(
    claude: FakeAnthropic, fake: FakeOpenAI, gateway: Any, sdk: Any
) -> None:
    gw = await chain(claude, fake, gateway)
    client = sdk(gw)
    completion = await client.chat.completions.create(model="smart", messages=ASK)
    assert completion.choices[0].message.content == "echo from gpt-4o-mini"
    stream = await client.chat.completions.create(model="smart", messages=ASK, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "echo from gpt-4o-mini"
    assert len(claude.seen) == 2  # each request tried Anthropic first


async def test_anthropic_error_shape_when_the_request_is_refused_upstream(
    fake: FakeOpenAI, gateway: Any
) -> None:
    """An OpenAI provider's 400 behind /v1/messages reaches the client as Anthropic's error."""
    import anthropic

    fake.then(reply_json(fixture("openai/error_400.json"), status=400))
    gw = await gateway(
        f"""
providers:
  gpt: {{type: openai, base_url: "{fake.url}", api_key: {PROVIDER_KEY}, models: [gpt-4o-mini]}}
"""
    )
    async with anthropic_client(gw) as client:
        with pytest.raises(anthropic.BadRequestError) as caught:
            await client.messages.create(
                model="gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": "x"}]
            )
    assert caught.value.body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "Invalid 'messages[1].content': string too long.",
        },
    }


async def test_mock_provider_answers_messages(gateway: Any) -> None:
    gw = await gateway("providers:\n  demo: {type: mock, models: [echo]}\n")
    ask = {
        "model": "echo",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "one two three"}],
    }
    async with anthropic_client(gw) as client:
        message = await client.messages.create(**ask)
        assert message.content[0].text == "one two three"  # type: ignore[union-attr]
        assert message.usage.output_tokens == 3
        async with client.messages.stream(**ask) as stream:
            pieces_seen = [piece async for piece in stream.text_stream]
            final = await stream.get_final_message()
    assert pieces_seen == ["one ", "two ", "three"]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 3


def test_fixture_pieces_cut_events() -> None:
    """The e2e streams above really cut events mid-way (the fake writes these pieces)."""
    data = fixture("anthropic/stream_text.sse")
    assert any(not p.endswith(b"\n\n") for p in pieces(data, 7))
