"""The anthropic adapter as pure functions, on recorded Messages API fixtures."""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any

import orjson
import pytest
from openai.types.chat import ChatCompletion

from llmgw.adapter import Adapter
from llmgw.config import parse
from llmgw.core import Call, Unsupported, Usage
from tests.provider_fakes import (
    SPLITS,
    collect_chat,
    fixture,
    openai_chunks,
    pieces,
    translate,
)

ADAPTER = Adapter.of("anthropic")
CONFIG = parse(
    """
providers:
  claude: {type: anthropic, api_key: sk-ant-test, default_max_tokens: 1024}
  proxy: {type: anthropic, api_key: sk-ant-test, base_url: "https://proxy.example/v1",
          anthropic_version: "2024-01-01", headers: {X-Team: a}}
""",
    environ={},
)
CLAUDE, PROXY = CONFIG.providers["claude"], CONFIG.providers["proxy"]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}


def chat(stream: bool = False, **body: Any) -> Call:
    body = {"model": "claude", "messages": [{"role": "user", "content": "Hi"}], **body}
    if stream:
        body["stream"] = True
    return Call("chat", "claude", stream, body, orjson.dumps(body))


def sent(call: Call, provider: Any = CLAUDE) -> dict[str, Any]:
    request = ADAPTER.request(call, "claude-sonnet-4-5", provider)
    parsed: dict[str, Any] = orjson.loads(request.body)
    return parsed


def test_conversation_becomes_alternating_turns_with_system_tools_and_images() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"},
                },
            ],
        },
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location": "Lyon"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
        {"role": "user", "content": "Thanks"},
    ]
    body = sent(chat(messages=messages, tools=[WEATHER], tool_choice="auto"))
    assert body["system"] == "Be brief.\n\nUse metric units."
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather in Paris?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "get_weather",
                    "input": {"location": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "call_2",
                    "name": "get_weather",
                    "input": {"location": "Lyon"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "21C"},
                {"type": "text", "text": "Thanks"},
            ],
        },
    ]
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather",
            "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}},
        }
    ]
    assert body["tool_choice"] == {"type": "auto"}
    assert body["model"] == "claude-sonnet-4-5"
    assert "stream" not in body


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, {"max_tokens": 1024}),
        ({"max_tokens": 50}, {"max_tokens": 50}),
        ({"max_tokens": 50, "max_completion_tokens": 70}, {"max_tokens": 70}),
        ({"stop": "END"}, {"stop_sequences": ["END"]}),
        (
            {"stop": ["a", "b"], "temperature": 0.2, "top_p": 0.9},
            {"stop_sequences": ["a", "b"], "temperature": 0.2, "top_p": 0.9},
        ),
        ({"user": "u-42"}, {"metadata": {"user_id": "u-42"}}),
        ({"tools": [WEATHER], "tool_choice": "required"}, {"tool_choice": {"type": "any"}}),
        ({"tools": [WEATHER], "tool_choice": "none"}, {"tool_choice": {"type": "none"}}),
        (
            {
                "tools": [WEATHER],
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            },
            {"tool_choice": {"type": "tool", "name": "get_weather"}},
        ),
        (
            {"tools": [WEATHER], "parallel_tool_calls": False},
            {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}},
        ),
    ],
)
def test_request_fields(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    body = sent(chat(**fields))
    assert {k: body[k] for k in expected} == expected


def test_stream_request_sets_stream_and_never_forwards_stream_options() -> None:
    body = sent(chat(stream=True, stream_options={"include_usage": True}))
    assert body["stream"] is True
    assert set(body) == {"model", "messages", "max_tokens", "stream"}


@pytest.mark.parametrize(
    "call",
    [
        chat(n=2),
        chat(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}
                    ],
                }
            ]
        ),
        Call("completions", "c", False, {"prompt": "x"}, b"{}"),
        Call("embeddings", "c", False, {"input": "x"}, b"{}"),
    ],
)
def test_what_anthropic_cannot_serve_is_unsupported(call: Call) -> None:
    with pytest.raises(Unsupported):
        ADAPTER.request(call, "claude-sonnet-4-5", CLAUDE)


def test_url_and_headers() -> None:
    request = ADAPTER.request(chat(), "claude-sonnet-4-5", CLAUDE)
    assert request.url == "https://api.anthropic.com/v1/messages"
    assert request.headers == {
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
        "x-api-key": "sk-ant-test",
    }
    proxied = ADAPTER.request(chat(), "claude-sonnet-4-5", PROXY)
    assert proxied.url == "https://proxy.example/v1/messages"
    assert proxied.headers["anthropic-version"] == "2024-01-01"
    assert proxied.headers["X-Team"] == "a"


def test_messages_call_is_forwarded_unchanged_but_for_the_model() -> None:
    raw = b'{"model":"smart", "max_tokens":10,"messages":[{"role":"user","content":"Hi"}]}'
    headers = MappingProxyType({"anthropic-version": "2023-01-01", "anthropic-beta": "tools-x"})
    call = Call("messages", "smart", False, orjson.loads(raw), raw, headers)
    same = ADAPTER.request(Call("messages", "m", False, {}, b"exact bytes", headers), "m", CLAUDE)
    assert same.body == b"exact bytes"
    renamed = ADAPTER.request(call, "claude-haiku-4-5", PROXY)
    assert orjson.loads(renamed.body) == {**orjson.loads(raw), "model": "claude-haiku-4-5"}
    assert renamed.headers["anthropic-version"] == "2023-01-01"  # the client's wins
    assert renamed.headers["anthropic-beta"] == "tools-x"
    assert ADAPTER.passes_through(call) and not ADAPTER.passes_through(chat())
    assert ADAPTER.response(call, "m", b"{ body }") == b"{ body }"


@pytest.mark.parametrize(
    ("name", "finish", "usage"),
    [
        ("message_text.json", "stop", (12, 10)),
        ("message_tool_use.json", "tool_calls", (484, 74)),
        ("message_max_tokens.json", "length", (9, 3)),
    ],
)
def test_response_becomes_chat_completion(name: str, finish: str, usage: tuple[int, int]) -> None:
    body = fixture(f"anthropic/{name}")
    completion = ChatCompletion.model_validate_json(ADAPTER.response(chat(), "claude", body))
    source = orjson.loads(body)
    assert completion.id == source["id"]
    assert completion.model == source["model"]
    choice = completion.choices[0]
    assert choice.finish_reason == finish
    assert choice.message.content == "".join(
        b["text"] for b in source["content"] if b["type"] == "text"
    )
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == usage
    assert ADAPTER.usage(body) == Usage(*usage)
    if finish == "tool_calls":
        assert completion.usage.prompt_tokens_details is not None
        assert completion.usage.prompt_tokens_details.cached_tokens == 100
        assert choice.message.tool_calls is not None
        call = choice.message.tool_calls[0]
        assert call.id == "toolu_01A09q90qw90lq917835lq9"
        assert call.function.name == "get_weather"  # type: ignore[union-attr]
        assert orjson.loads(call.function.arguments) == {  # type: ignore[union-attr]
            "location": "San Francisco, CA",
            "unit": "celsius",
        }


def test_errors_keep_their_status_and_take_openai_shape() -> None:
    body = fixture("anthropic/error_400.json")
    error = orjson.loads(ADAPTER.error_body(chat(), 400, body))["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("max_tokens: 100000 > 64000")
    assert set(error) == {"message", "type", "param", "code"}
    assert orjson.loads(ADAPTER.error_body(chat(), 404, b"not json"))["error"]["type"] == (
        "not_found_error"
    )
    messages = Call("messages", "m", False, {}, b"{}")
    assert ADAPTER.error_body(messages, 400, body) == body
    assert ADAPTER.failure_status(529) == 503
    assert ADAPTER.failure_status(429) == 429


@pytest.mark.parametrize("include_usage", [True, False])
def test_text_stream_is_the_same_however_it_is_cut(include_usage: bool) -> None:
    data = fixture("anthropic/stream_text.sse")
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    outputs = set()
    for size in SPLITS:
        translator = ADAPTER.stream(chat(True, **options), "claude")
        assert translator is not None
        # "created" is the clock's second: the runs may straddle one
        outputs.add(re.sub(rb'"created":\d+', b'"created":0', translate(translator, data, size)))
        assert translator.done and translator.error is None
        assert translator.usage == Usage(25, 15)
    assert len(outputs) == 1
    chunks = openai_chunks(outputs.pop())
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert {c["id"] for c in chunks} == {"msg_01HCDu5LRGeP2o7s2xGmxyx8"}
    result = collect_chat(chunks)
    assert result["text"] == "Hello, wörld!"
    assert result["finish"] == "stop"
    if include_usage:
        assert chunks[-1]["choices"] == []
        assert chunks[-1]["usage"] == {
            "prompt_tokens": 25,
            "completion_tokens": 15,
            "total_tokens": 40,
        }
    else:
        assert result["usage"] is None


def test_streamed_tool_arguments_arrive_as_fragments() -> None:
    data = fixture("anthropic/stream_tool_use.sse")
    outputs = set()
    for size in SPLITS:
        translator = ADAPTER.stream(chat(True), "claude")
        assert translator is not None
        outputs.add(translate(translator, data, size))
    assert len(outputs) == 1
    chunks = openai_chunks(outputs.pop())
    first_call = next(c for c in chunks if c["choices"][0]["delta"].get("tool_calls"))
    assert first_call["choices"][0]["delta"]["tool_calls"] == [
        {
            "index": 0,
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        }
    ]
    fragments = [
        call["function"]["arguments"]
        for c in chunks
        for call in c["choices"][0]["delta"].get("tool_calls") or []
        if call["index"] == 0 and "id" not in call
    ]
    assert len(fragments) == 4  # one per input_json_delta that carried text
    result = collect_chat(chunks)
    assert result["text"] == "Okay, let's check the weather for San Francisco, CA:"
    assert result["tool_calls"] == {
        0: {
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "name": "get_weather",
            "arguments": '{"location": "San Francisco, CA", "unit": "fahrenheit"}',
        },
        1: {"id": "toolu_02Ab", "name": "get_time", "arguments": '{"tz": "PST"}'},
    }
    assert result["finish"] == "tool_calls"


def test_error_as_first_event_writes_nothing_so_the_gateway_can_fall_back() -> None:
    translator = ADAPTER.stream(chat(True), "claude")
    assert translator is not None
    assert translate(translator, fixture("anthropic/stream_error_first.sse"), 5) == b""
    assert translator.error == "overloaded_error: Overloaded"
    assert not translator.done


def test_error_midway_ends_the_stream_with_an_openai_error_event() -> None:
    translator = ADAPTER.stream(chat(True), "claude")
    assert translator is not None
    out = translate(translator, fixture("anthropic/stream_error_midway.sse"), 7)
    assert translator.error is not None and not translator.done
    assert b"[DONE]" not in out
    last = orjson.loads(out.rstrip().rsplit(b"\n\n", 1)[-1].removeprefix(b"data: "))
    assert last["error"]["message"] == "overloaded_error: Overloaded"


@pytest.mark.parametrize("name", ["stream_text.sse", "stream_tool_use.sse"])
def test_messages_stream_is_relayed_byte_for_byte_while_usage_is_read(name: str) -> None:
    data = fixture(f"anthropic/{name}")
    messages = Call("messages", "claude", True, {}, b"{}")
    for size in SPLITS:
        relay = ADAPTER.stream(messages, "claude")
        assert relay is not None
        written = [relay.feed(part) for part in pieces(data, size)] + [relay.finish()]
        assert b"".join(written) == data
        assert relay.done and relay.error is None
        expected = Usage(25, 15) if name == "stream_text.sse" else Usage(472, 89)
        assert relay.usage == expected
        # Nothing is written until the first event is complete; then chunks go as they come.
        first_event_end = data.index(b"\n\n") + 2
        committed = next(i for i, part in enumerate(written) if part)
        assert (committed + 1) * size >= first_event_end
        assert all(
            part == piece
            for part, piece in zip(
                written[committed + 1 :], pieces(data, size)[committed + 1 :], strict=False
            )
        )


def test_messages_stream_opening_with_an_error_writes_nothing() -> None:
    relay = ADAPTER.stream(Call("messages", "claude", True, {}, b"{}"), "claude")
    assert relay is not None
    assert translate(relay, fixture("anthropic/stream_error_first.sse"), 10) == b""
    assert relay.error is not None
