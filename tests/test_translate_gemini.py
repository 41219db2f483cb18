"""The gemini adapter as pure functions, on recorded Gemini API fixtures."""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson
import pytest
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion

from llmgw.adapter import Adapter
from llmgw.config import parse
from llmgw.core import Call, Unsupported, Usage
from tests.provider_fakes import SPLITS, collect_chat, fixture, openai_chunks, translate

ADAPTER = Adapter.of("gemini")
CONFIG = parse(
    """
providers:
  gem: {type: gemini, api_key: g-key}
  local: {type: gemini, api_key: g-key, base_url: "http://127.0.0.1:9/v1beta", headers: {X-Team: a}}
""",
    environ={},
)
GEM, LOCAL = CONFIG.providers["gem"], CONFIG.providers["local"]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
            "additionalProperties": False,
        },
    },
}


def chat(stream: bool = False, **body: Any) -> Call:
    body = {"model": "gemini", "messages": [{"role": "user", "content": "Hi"}], **body}
    if stream:
        body["stream"] = True
    return Call("chat", "gemini", stream, body, orjson.dumps(body))


def embed(**body: Any) -> Call:
    body = {"model": "emb", "input": ["a", "b"], **body}
    return Call("embeddings", "emb", False, body, orjson.dumps(body))


def sent(call: Call, model: str = "gemini-2.5-flash") -> dict[str, Any]:
    parsed: dict[str, Any] = orjson.loads(ADAPTER.request(call, model, GEM).body)
    return parsed


def test_conversation_becomes_contents_with_system_instruction_and_function_calling() -> None:
    conversation = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe these, then get the weather."},
                {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklGRg=="}},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.com/photo.png?size=large"},
                },
                {"type": "input_audio", "input_audio": {"data": "SUQz", "format": "mp3"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Two pictures.",
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": '{"temperature": 18}'},
        {"role": "tool", "tool_call_id": "call_b", "name": "get_time", "content": "noon"},
        {"role": "user", "content": "Thanks"},
    ]
    body = sent(chat(messages=conversation, tools=[WEATHER], tool_choice="auto"))
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "Describe these, then get the weather."},
                {"inlineData": {"mimeType": "image/webp", "data": "UklGRg=="}},
                {
                    "fileData": {
                        "mimeType": "image/png",
                        "fileUri": "https://example.com/photo.png?size=large",
                    }
                },
                {"inlineData": {"mimeType": "audio/mp3", "data": "SUQz"}},
            ],
        },
        {
            "role": "model",
            "parts": [
                {"text": "Two pictures."},
                {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temperature": 18}}},
                {"functionResponse": {"name": "get_time", "response": {"content": "noon"}}},
                {"text": "Thanks"},
            ],
        },
    ]
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather",
                    "parametersJsonSchema": WEATHER["function"]["parameters"],  # type: ignore[index]
                }
            ]
        }
    ]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}


@pytest.mark.parametrize(
    ("fields", "key", "expected"),
    [
        (
            {
                "temperature": 0.3,
                "top_p": 0.8,
                "max_completion_tokens": 99,
                "stop": "END",
                "n": 2,
                "seed": 7,
            },
            "generationConfig",
            {
                "temperature": 0.3,
                "topP": 0.8,
                "maxOutputTokens": 99,
                "stopSequences": ["END"],
                "candidateCount": 2,
                "seed": 7,
            },
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "object"}},
                }
            },
            "generationConfig",
            {"responseMimeType": "application/json", "responseJsonSchema": {"type": "object"}},
        ),
        (
            {"tools": [WEATHER], "tool_choice": "required"},
            "toolConfig",
            {"functionCallingConfig": {"mode": "ANY"}},
        ),
        (
            {"tools": [WEATHER], "tool_choice": "none"},
            "toolConfig",
            {"functionCallingConfig": {"mode": "NONE"}},
        ),
        (
            {
                "tools": [WEATHER],
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            },
            "toolConfig",
            {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
        ),
    ],
)
def test_request_fields(fields: dict[str, Any], key: str, expected: dict[str, Any]) -> None:
    assert sent(chat(**fields))[key] == expected


def test_urls_and_headers() -> None:
    plain = ADAPTER.request(chat(), "gemini-2.5-flash", GEM)
    assert plain.url == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    )
    assert plain.headers == {"Content-Type": "application/json", "x-goog-api-key": "g-key"}
    streamed = ADAPTER.request(
        chat(True, stream_options={"include_usage": True}), "models/gemini-2.5-pro", LOCAL
    )
    assert streamed.url == (
        "http://127.0.0.1:9/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    )
    assert streamed.headers["X-Team"] == "a"
    assert set(orjson.loads(streamed.body)) == {"contents"}  # nothing OpenAI-only leaks
    vectors = ADAPTER.request(embed(dimensions=3), "text-embedding-004", GEM)
    assert vectors.url.endswith("/models/text-embedding-004:batchEmbedContents")
    assert orjson.loads(vectors.body) == {
        "requests": [
            {
                "model": "models/text-embedding-004",
                "content": {"parts": [{"text": t}]},
                "outputDimensionality": 3,
            }
            for t in ("a", "b")
        ]
    }


@pytest.mark.parametrize(
    "call",
    [
        Call("completions", "g", False, {"prompt": "x"}, b"{}"),
        embed(input=[[1, 2, 3]]),
        chat(messages=[{"role": "user", "content": [{"type": "video", "video": {}}]}]),
    ],
)
def test_what_gemini_cannot_serve_is_unsupported(call: Call) -> None:
    with pytest.raises(Unsupported):
        ADAPTER.request(call, "gemini-2.5-flash", GEM)


def test_text_response() -> None:
    body = fixture("gemini/generate_text.json")
    completion = ChatCompletion.model_validate_json(ADAPTER.response(chat(), "gemini", body))
    assert completion.id == "chatcmpl-mAitaLmkHPPlz7IPvtfUqQ4"
    assert completion.model == "gemini-2.5-flash"
    assert (
        completion.choices[0].message.content == "The sky is blue because of Rayleigh scattering."
    )
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    # Thinking tokens are billed as output: they count as completion tokens.
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (8, 22)
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 12
    assert ADAPTER.usage(body) == Usage(8, 22)


def test_function_call_response() -> None:
    body = fixture("gemini/generate_function_call.json")
    completion = ChatCompletion.model_validate_json(ADAPTER.response(chat(), "gemini", body))
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, orjson.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr]
        ("call_fc-0001_0", "get_weather", {"location": "Paris", "unit": "celsius"}),
        ("call_fc-0001_1", "get_time", {"tz": "CET"}),
    ]


@pytest.mark.parametrize("name", ["generate_blocked.json", "generate_safety.json"])
def test_safety_stops_are_content_filter(name: str) -> None:
    body = fixture(f"gemini/{name}")
    completion = ChatCompletion.model_validate_json(ADAPTER.response(chat(), "gemini", body))
    choice = completion.choices[0]
    assert choice.finish_reason == "content_filter"
    if name == "generate_blocked.json":
        assert choice.message.content is None
        assert choice.message.refusal == "the prompt was blocked by the provider (SAFETY)"


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings_response(encoding: str) -> None:
    body = fixture("gemini/embed.json")
    out = orjson.loads(
        ADAPTER.response(embed(encoding_format=encoding), "text-embedding-004", body)
    )
    expected = [e["values"] for e in orjson.loads(body)["embeddings"]]
    if encoding == "base64":  # little-endian float32, as the openai SDK decodes it
        for item, values in zip(out["data"], expected, strict=True):
            raw = base64.b64decode(item["embedding"])
            item["embedding"] = list(struct.unpack(f"<{len(values)}f", raw))
    result = CreateEmbeddingResponse.model_validate(out)
    assert [d.index for d in result.data] == [0, 1]
    assert result.model == "text-embedding-004"
    assert result.usage.prompt_tokens == result.usage.total_tokens > 0
    for item, values in zip(result.data, expected, strict=True):
        assert item.embedding == pytest.approx(values, rel=1e-6)


@pytest.mark.parametrize(
    ("status", "name", "kind", "code"),
    [
        (400, "error_400.json", "invalid_request_error", "INVALID_ARGUMENT"),
        (429, "error_429.json", "rate_limit_error", "RESOURCE_EXHAUSTED"),
    ],
)
def test_errors_take_openai_shape(status: int, name: str, kind: str, code: str) -> None:
    body = fixture(f"gemini/{name}")
    for framed in (body, b"[" + body + b"]"):
        error = orjson.loads(ADAPTER.error_body(chat(), status, framed))["error"]
        assert (error["type"], error["code"]) == (kind, code)
        assert error["message"] == orjson.loads(body)["error"]["message"]


@pytest.mark.parametrize("include_usage", [True, False])
def test_text_stream_is_the_same_however_it_is_cut(include_usage: bool) -> None:
    data = fixture("gemini/stream_text.sse")
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    outputs = set()
    for size in SPLITS:
        translator = ADAPTER.stream(chat(True, **options), "gemini")
        assert translator is not None
        outputs.add(translate(translator, data, size))
        assert translator.done and translator.error is None
        assert translator.usage == Usage(9, 18)
    assert len(outputs) == 1
    chunks = openai_chunks(outputs.pop())
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    result = collect_chat(chunks)
    assert (
        result["text"] == "Why did the chicken cross the road? To get to the other side — ünïcode."
    )
    assert result["finish"] == "stop"
    if include_usage:
        assert chunks[-1]["usage"] == {
            "prompt_tokens": 9,
            "completion_tokens": 18,
            "total_tokens": 27,
        }
    else:
        assert result["usage"] is None


def test_function_call_stream() -> None:
    translator = ADAPTER.stream(chat(True, stream_options={"include_usage": True}), "gemini")
    assert translator is not None
    chunks = openai_chunks(translate(translator, fixture("gemini/stream_function_call.sse"), 13))
    result = collect_chat(chunks)
    assert result["text"] == "Let me look that up."
    assert result["tool_calls"] == {
        0: {
            "id": "call_Xk2taN3hFqjEz7IP0Ku5kAo_0",
            "name": "get_weather",
            "arguments": '{"location":"Paris","unit":"celsius"}',
        },
        1: {
            "id": "call_Xk2taN3hFqjEz7IP0Ku5kAo_1",
            "name": "get_time",
            "arguments": '{"tz":"CET"}',
        },
    }
    assert result["finish"] == "tool_calls"
    assert result["usage"]["prompt_tokens"] == 40


def test_blocked_prompt_stream_ends_with_a_refusal() -> None:
    translator = ADAPTER.stream(chat(True), "gemini")
    assert translator is not None
    chunks = openai_chunks(translate(translator, fixture("gemini/stream_blocked.sse"), 4))
    assert translator.done
    assert chunks[0]["choices"][0]["delta"]["refusal"] == (
        "the prompt was blocked by the provider (PROHIBITED_CONTENT)"
    )
    assert collect_chat(chunks)["finish"] == "content_filter"


def test_stream_errors_first_and_midway() -> None:
    error_event = fixture("gemini/stream_error_midway.sse").split(b"\r\n\r\n")[1] + b"\r\n\r\n"
    first = ADAPTER.stream(chat(True), "gemini")
    assert first is not None
    assert translate(first, error_event, 8) == b""
    assert first.error == "The model is overloaded. Please try again later."

    midway = ADAPTER.stream(chat(True), "gemini")
    assert midway is not None
    out = translate(midway, fixture("gemini/stream_error_midway.sse"), 8)
    assert not midway.done and b"[DONE]" not in out
    last = orjson.loads(out.rstrip().rsplit(b"\n\n", 1)[-1].removeprefix(b"data: "))
    assert last["error"]["message"] == "The model is overloaded. Please try again later."


def test_stream_cut_before_a_finish_reason_is_not_done() -> None:
    translator = ADAPTER.stream(chat(True), "gemini")
    assert translator is not None
    data = fixture("gemini/stream_text.sse").split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    out = translate(translator, data, 100)
    assert out and b"[DONE]" not in out
    assert not translator.done
