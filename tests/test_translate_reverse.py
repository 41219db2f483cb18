"""``/v1/messages`` served by OpenAI-format providers (the base adapter) and by Gemini
(composed through OpenAI's format): Anthropic in, Anthropic out, as pure functions."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from anthropic.types import Message

from llmgw.adapter import Adapter
from llmgw.config import parse
from llmgw.core import Call, Usage
from tests.provider_fakes import SPLITS, anthropic_events, fixture, translate

CONFIG = parse(
    """
providers:
  gpt: {type: openai, api_key: sk-test, base_url: "https://llm.example/v1"}
  gem: {type: gemini, api_key: g-test}
""",
    environ={},
)
OPENAI, GEMINI = Adapter.of("openai"), Adapter.of("gemini")
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather",
    "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}},
}


def messages(stream: bool = False, **body: Any) -> Call:
    body = {
        "model": "smart",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Hi"}],
        **body,
    }
    if stream:
        body["stream"] = True
    return Call("messages", "smart", stream, body, orjson.dumps(body))


def sent(call: Call, adapter: Any = OPENAI, provider: str = "gpt") -> tuple[str, dict[str, Any]]:
    request = adapter.request(call, "upstream-model", CONFIG.providers[provider])
    return request.url, orjson.loads(request.body)


def test_anthropic_request_becomes_an_openai_chat_request() -> None:
    conversation = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this image, and the weather?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "A cat. Checking weather."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"location": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "18C"}],
                },
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ]
    url, body = sent(
        messages(
            system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
            messages=conversation,
            tools=[WEATHER_TOOL, {"type": "web_search_20250305", "name": "web_search"}],
            tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
            stop_sequences=["END"],
            temperature=0.5,
            top_k=40,
            metadata={"user_id": "u-1"},
        )
    )
    assert url == "https://llm.example/v1/chat/completions"
    assert body == {
        "model": "upstream-model",
        "messages": [
            {"role": "system", "content": "Be brief.\n\nBe kind."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this image, and the weather?"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": "A cat. Checking weather.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "user", "content": "And tomorrow?"},
        ],
        "max_tokens": 256,
        "stop": ["END"],
        "temperature": 0.5,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather",
                    "parameters": {
                        "type": "object",
                        "properties": {"location": {"type": "string"}},
                    },
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "user": "u-1",
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [({"type": "auto"}, "auto"), ({"type": "any"}, "required"), ({"type": "none"}, "none")],
)
def test_tool_choice(choice: dict[str, Any], expected: str) -> None:
    _, body = sent(messages(tools=[WEATHER_TOOL], tool_choice=choice))
    assert body["tool_choice"] == expected


def test_streamed_messages_ask_the_openai_provider_for_usage() -> None:
    _, body = sent(messages(stream=True))
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_openai_completion_becomes_an_anthropic_message() -> None:
    out = OPENAI.response(messages(), "upstream-model", fixture("openai/chat_tool_calls.json"))
    message = Message.model_validate_json(out)
    assert message.id == "msg_B9MBs8CjcvOU2jLn4n570S5qMJKcT"  # from chatcmpl-B9MBs8...
    assert message.model == "gpt-4o-2024-08-06"
    assert message.stop_reason == "tool_use"
    assert [block.type for block in message.content] == ["text", "tool_use"]
    assert message.content[0].text == "Checking now."  # type: ignore[union-attr]
    tool = message.content[1]
    assert tool.type == "tool_use"
    assert (tool.id, tool.name, tool.input) == (
        "call_DdmO9pD3xa9XTPNJ32zg2hcA",
        "get_weather",
        {"location": "Paris"},
    )
    assert (message.usage.input_tokens, message.usage.output_tokens) == (82, 17)
    # The gateway reads usage from the provider's own body, before translation.
    assert OPENAI.usage(fixture("openai/chat_tool_calls.json")) == Usage(82, 17)


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (400, fixture("openai/error_400.json"), "invalid_request_error"),
        (413, b'{"error": {"message": "too big", "type": "server_error"}}', "request_too_large"),
        (503, b"<html>busy</html>", "overloaded_error"),
        (422, b"{}", "invalid_request_error"),
    ],
)
def test_openai_errors_take_anthropic_shape(status: int, body: bytes, kind: str) -> None:
    error = orjson.loads(OPENAI.error_body(messages(), status, body))
    assert error["type"] == "error"
    assert error["error"]["type"] == kind
    assert error["error"]["message"]


def test_openai_stream_becomes_the_anthropic_event_sequence() -> None:
    data = fixture("openai/stream_tool_calls.sse")
    outputs = set()
    for size in SPLITS:
        translator = OPENAI.stream(messages(stream=True), "upstream-model")
        assert translator is not None
        outputs.add(translate(translator, data, size))
        assert translator.done and translator.error is None
        assert translator.usage == Usage(82, 30)
    assert len(outputs) == 1
    events = anthropic_events(outputs.pop())
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta",
        "message_stop",
    ]  # fmt: skip
    assert events[0]["message"]["model"] == "gpt-4o-2024-08-06"
    assert events[5]["content_block"] == {
        "type": "tool_use",
        "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
        "name": "get_weather",
        "input": {},
    }
    arguments = "".join(
        e["delta"]["partial_json"]
        for e in events
        if e["type"] == "content_block_delta" and e["index"] == 1
    )
    assert orjson.loads(arguments) == {"location": "Paris"}
    assert events[9]["content_block"]["name"] == "get_time"
    assert events[-2]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert events[-2]["usage"] == {
        "output_tokens": 30,
        "input_tokens": 18,
        "cache_read_input_tokens": 64,
    }


def test_openai_stream_error_first_falls_back_and_midway_is_an_anthropic_error_event() -> None:
    error = b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'
    first = OPENAI.stream(messages(stream=True), "m")
    assert first is not None
    assert translate(first, error, 1000) == b""
    assert first.error == "overloaded"

    midway = OPENAI.stream(messages(stream=True), "m")
    assert midway is not None
    head = fixture("openai/stream_tool_calls.sse").split(b"\n\n")[1] + b"\n\n"
    events = anthropic_events(translate(midway, head + error, 9))
    assert [e["type"] for e in events][-1] == "error"
    assert events[-1]["error"] == {"type": "api_error", "message": "overloaded"}
    assert midway.error == "overloaded" and not midway.done


def test_openai_stream_cut_before_done_is_not_done() -> None:
    data = fixture("openai/stream_tool_calls.sse").replace(b"data: [DONE]\n\n", b"")
    translator = OPENAI.stream(messages(stream=True), "m")
    assert translator is not None
    events = anthropic_events(translate(translator, data, 50))
    assert "message_stop" not in [e["type"] for e in events]
    assert not translator.done


# Gemini behind /v1/messages: Anthropic → OpenAI → Gemini and back ----------------------


def test_messages_to_gemini_compose_both_translations() -> None:
    url, body = sent(messages(system="Be brief.", stream=True), GEMINI, "gem")
    assert url.endswith("/models/upstream-model:streamGenerateContent?alt=sse")
    assert body == {
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"maxOutputTokens": 256},
    }
    message = Message.model_validate_json(
        GEMINI.response(
            messages(), "gemini-2.5-flash", fixture("gemini/generate_function_call.json")
        )
    )
    assert message.stop_reason == "tool_use"
    assert [b.name for b in message.content if b.type == "tool_use"] == ["get_weather", "get_time"]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (57, 22)
    error = orjson.loads(GEMINI.error_body(messages(), 400, fixture("gemini/error_400.json")))
    assert error["error"]["type"] == "invalid_request_error"
    assert "contents is not specified" in error["error"]["message"]


def test_gemini_stream_behind_messages_is_an_anthropic_event_sequence() -> None:
    data = fixture("gemini/stream_text.sse")
    outputs = set()
    for size in SPLITS:
        translator = GEMINI.stream(messages(stream=True), "gemini-2.5-flash")
        assert translator is not None
        outputs.add(translate(translator, data, size))
        assert translator.done and translator.error is None
        assert translator.usage == Usage(9, 18)  # read from Gemini's own usageMetadata
    assert len(outputs) == 1
    events = anthropic_events(outputs.pop())
    assert events[0]["type"] == "message_start"
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert text == "Why did the chicken cross the road? To get to the other side — ünïcode."
    assert events[-2]["delta"]["stop_reason"] == "end_turn"
    assert events[-2]["usage"]["output_tokens"] == 18
    assert events[-1] == {"type": "message_stop"}


def test_gemini_error_midway_behind_messages_is_an_anthropic_error_event() -> None:
    translator = GEMINI.stream(messages(stream=True), "gemini-2.5-flash")
    assert translator is not None
    events = anthropic_events(translate(translator, fixture("gemini/stream_error_midway.sse"), 11))
    assert events[-1]["type"] == "error"
    assert "overloaded" in events[-1]["error"]["message"]
    assert translator.error is not None and not translator.done
