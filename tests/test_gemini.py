"""Gemini providers end to end: the official openai SDK (chat, streams, tools,
embeddings) and the anthropic SDK (/v1/messages, composed through OpenAI's format)
against an in-process fake of Gemini's API."""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest

from tests.conftest import PROVIDER_KEY
from tests.fakes import reply_json
from tests.provider_fakes import FakeGemini, anthropic_client, fixture, reply_sse, serve

ASK = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "parameters": {"type": "object", "properties": {"x": {"type": "string"}}},
        },
    }
    for name in ("get_weather", "get_time")
]


@pytest.fixture
async def gemini(aiohttp_server: Any) -> FakeGemini:
    fake = FakeGemini()
    await serve(aiohttp_server, fake)
    return fake


def config(url: str) -> str:
    return f"""
providers:
  gem:
    type: gemini
    base_url: {url}/v1beta
    api_key: {PROVIDER_KEY}
    models: [gemini-2.5-flash, text-embedding-004]
    max_retries: 0
"""


async def test_chat(gemini: FakeGemini, gateway: Any, sdk: Any) -> None:
    gw = await gateway(config(gemini.url))
    completion = await sdk(gw).chat.completions.create(
        model="gemini-2.5-flash", messages=ASK, temperature=0.2, max_tokens=64
    )
    assert completion.choices[0].message.content == "echo: Weather in Paris?"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (8, 22)
    assert gemini.problems == []
    seen = gemini.seen[0]
    assert seen.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert seen.headers["x-goog-api-key"] == PROVIDER_KEY
    assert seen.body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert seen.body["generationConfig"] == {"temperature": 0.2, "maxOutputTokens": 64}


async def test_tool_calls_then_tool_results(gemini: FakeGemini, gateway: Any, sdk: Any) -> None:
    gemini.then(reply_json(fixture("gemini/generate_function_call.json")))
    gw = await gateway(config(gemini.url))
    client = sdk(gw)
    first = await client.chat.completions.create(
        model="gemini-2.5-flash", messages=ASK, tools=TOOLS, tool_choice="required"
    )
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    calls = message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]  # type: ignore[union-attr]
    results = [
        {"role": "tool", "tool_call_id": call.id, "content": f'{{"result": {i}}}'}
        for i, call in enumerate(calls)
    ]
    second = await client.chat.completions.create(
        model="gemini-2.5-flash",
        messages=[*ASK, message.model_dump(exclude_none=True), *results],
        tools=TOOLS,
    )
    assert second.choices[0].finish_reason == "stop"
    assert gemini.problems == []
    contents = gemini.seen[1].body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"result": 0}}},
        {"functionResponse": {"name": "get_time", "response": {"result": 1}}},
    ]
    assert gemini.seen[0].body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


async def test_stream_with_usage(gemini: FakeGemini, gateway: Any, sdk: Any) -> None:
    gemini.then(reply_sse(fixture("gemini/stream_text.sse"), size=9))
    gw = await gateway(config(gemini.url))
    stream = await sdk(gw).chat.completions.create(
        model="gemini-2.5-flash", messages=ASK, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Why did the chicken cross the road? To get to the other side — ünïcode."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 27
    assert gemini.seen[0].path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert gemini.problems == []


async def test_streamed_tool_calls(gemini: FakeGemini, gateway: Any, sdk: Any) -> None:
    gemini.then(reply_sse(fixture("gemini/stream_function_call.sse"), size=21))
    gw = await gateway(config(gemini.url))
    stream = await sdk(gw).chat.completions.create(
        model="gemini-2.5-flash", messages=ASK, tools=TOOLS, stream=True
    )
    calls: dict[int, tuple[str, str]] = {}
    finish = None
    async for chunk in stream:
        for call in chunk.choices[0].delta.tool_calls or []:
            assert call.function is not None
            calls[call.index] = (call.function.name or "", call.function.arguments or "")
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert {i: (name, orjson.loads(args)) for i, (name, args) in calls.items()} == {
        0: ("get_weather", {"location": "Paris", "unit": "celsius"}),
        1: ("get_time", {"tz": "CET"}),
    }


async def test_blocked_prompt_is_content_filter(gemini: FakeGemini, gateway: Any, sdk: Any) -> None:
    gemini.then(reply_json(fixture("gemini/generate_blocked.json")))
    gw = await gateway(config(gemini.url))
    completion = await sdk(gw).chat.completions.create(model="gemini-2.5-flash", messages=ASK)
    assert completion.choices[0].finish_reason == "content_filter"
    assert "blocked" in (completion.choices[0].message.refusal or "")


async def test_gemini_errors_reach_openai_clients_in_openai_shape(
    gemini: FakeGemini, gateway: Any, sdk: Any
) -> None:
    gemini.then(reply_json(fixture("gemini/error_400.json"), status=400))
    gw = await gateway(config(gemini.url))
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(gw).chat.completions.create(model="gemini-2.5-flash", messages=ASK)
    assert caught.value.code == "INVALID_ARGUMENT"
    assert "contents is not specified" in caught.value.message


async def test_embeddings_base64_by_default_and_floats(
    gemini: FakeGemini, gateway: Any, sdk: Any
) -> None:
    gw = await gateway(config(gemini.url))
    client = sdk(gw)
    default = await client.embeddings.create(model="text-embedding-004", input=["a", "b"])
    floats = await client.embeddings.create(
        model="text-embedding-004", input="a", encoding_format="float", dimensions=3
    )
    assert [d.embedding for d in default.data] == [[0.5, -0.25, 0.125]] * 2
    assert floats.data[0].embedding == [0.5, -0.25, 0.125]
    assert gemini.seen[0].body["requests"][1] == {
        "model": "models/text-embedding-004",
        "content": {"parts": [{"text": "b"}]},
    }
    assert gemini.seen[1].body["requests"][0]["outputDimensionality"] == 3
    assert gemini.seen[0].path == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert gemini.problems == []


async def test_anthropic_sdk_through_messages_to_gemini(gemini: FakeGemini, gateway: Any) -> None:
    gemini.then(reply_json(fixture("gemini/generate_text.json")))
    gemini.then(reply_sse(fixture("gemini/stream_text.sse"), size=30))
    gw = await gateway(config(gemini.url))
    ask = {
        "model": "gemini-2.5-flash",
        "max_tokens": 100,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Why is the sky blue?"}],
    }
    async with anthropic_client(gw) as client:
        message = await client.messages.create(**ask)
        async with client.messages.stream(**ask) as stream:
            text = "".join([piece async for piece in stream.text_stream])
            final = await stream.get_final_message()
    assert message.content[0].text == "The sky is blue because of Rayleigh scattering."  # type: ignore[union-attr]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (8, 22)
    assert text == "Why did the chicken cross the road? To get to the other side — ünïcode."
    assert (final.stop_reason, final.usage.output_tokens) == ("end_turn", 18)
    assert gemini.seen[0].body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert gemini.problems == []
