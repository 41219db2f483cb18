"""What used to get lost between the OpenAI and Anthropic formats (issue 14, items 6-8):
tool calls without arguments, thinking, prompt-caching marks, ids and request ids —
driven end to end with the official SDKs against fake providers."""

from __future__ import annotations

from typing import Any

import anthropic
import orjson
import pytest

from tests.conftest import PROVIDER_KEY, claude_config
from tests.fakes import FakeOpenAI, reply_json
from tests.provider_fakes import (
    FakeAnthropic,
    anthropic_client,
    anthropic_events,
    openai_chunks,
    reply_sse,
)

NOW = {"type": "function", "function": {"name": "get_time"}}  # a tool that takes nothing
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
ASK = [{"role": "user", "content": "What time is it, and the weather in Paris?"}]
SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"


def anthropic_sse(*events: dict[str, Any]) -> bytes:
    return b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events
    )


def start(input_tokens: int = 30, **usage: int) -> dict[str, Any]:
    message = {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5-20251001",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1, **usage},
    }
    return {"type": "message_start", "message": message}


def block(index: int, content: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": content}


def delta(index: int, **fields: Any) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": fields}


def stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def end(reason: str, output_tokens: int = 20) -> list[dict[str, Any]]:
    return [
        {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        },
        {"type": "message_stop"},
    ]


def tool_use(ident: str, name: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": ident, "name": name, "input": {}}


# 6. Tool calls without arguments ----------------------------------------------------


async def test_streamed_tool_calls_without_arguments_assemble_to_json(
    claude: FakeAnthropic, gateway: Any, sdk: Any
) -> None:
    # get_time gets an empty input_json_delta (as Anthropic sends), the second
    # get_time none at all; get_weather gets real arguments.
    claude.then(
        reply_sse(
            anthropic_sse(
                start(),
                block(0, tool_use("toolu_01", "get_time")),
                delta(0, type="input_json_delta", partial_json=""),
                stop(0),
                block(1, tool_use("toolu_02", "get_weather")),
                delta(1, type="input_json_delta", partial_json='{"city": '),
                delta(1, type="input_json_delta", partial_json='"Paris"}'),
                stop(1),
                block(2, tool_use("toolu_03", "get_time")),
                stop(2),
                *end("tool_use"),
            ),
            size=11,
        )
    )
    gw = await gateway(claude_config(claude.url))
    stream = await sdk(gw).chat.completions.create(
        model="claude-haiku-4-5", messages=ASK, tools=[NOW, WEATHER], stream=True
    )
    arguments: dict[int, str] = {}
    async for chunk in stream:
        for call in chunk.choices[0].delta.tool_calls or []:
            fragment = call.function.arguments if call.function else None
            arguments[call.index] = arguments.get(call.index, "") + (fragment or "")
    assert [orjson.loads(arguments[i]) for i in range(3)] == [{}, {"city": "Paris"}, {}]
    assert arguments[0] == "{}"  # as OpenAI itself sends a call without arguments
    assert claude.problems == []


async def test_tool_call_without_arguments_is_json_when_not_streamed(
    claude: FakeAnthropic, gateway: Any, sdk: Any
) -> None:
    message = {
        **start()["message"],
        "content": [tool_use("toolu_01", "get_time")],
        "stop_reason": "tool_use",
    }
    claude.then(reply_json(message))
    gw = await gateway(claude_config(claude.url))
    completion = await sdk(gw).chat.completions.create(
        model="claude-haiku-4-5", messages=ASK, tools=[NOW]
    )
    call = (completion.choices[0].message.tool_calls or [])[0]
    assert orjson.loads(call.function.arguments) == {}  # type: ignore[union-attr]


# 8. Thinking as reasoning_content ----------------------------------------------------

THINKING_STREAM = anthropic_sse(
    start(),
    block(0, {"type": "thinking", "thinking": "", "signature": ""}),
    delta(0, type="thinking_delta", thinking="Paris is in France; "),
    delta(0, type="thinking_delta", thinking="it is 3pm there."),
    delta(0, type="signature_delta", signature=SIGNATURE),
    stop(0),
    block(1, {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"}),
    stop(1),
    block(2, {"type": "text", "text": ""}),
    delta(2, type="text_delta", text="It is 3pm."),
    stop(2),
    *end("end_turn"),
)


async def test_thinking_reaches_openai_clients_as_reasoning_content(
    claude: FakeAnthropic, gateway: Any, sdk: Any
) -> None:
    thinking_block = {"type": "thinking", "thinking": "Let me see.", "signature": SIGNATURE}
    message = {
        **start()["message"],
        "content": [thinking_block, {"type": "text", "text": "It is 3pm."}],
        "stop_reason": "end_turn",
    }
    claude.then(reply_json(message), reply_sse(THINKING_STREAM, size=9))
    gw = await gateway(claude_config(claude.url))
    client = sdk(gw)
    completion = await client.chat.completions.create(model="claude-haiku-4-5", messages=ASK)
    reply = completion.choices[0].message
    assert (reply.content, reply.reasoning_content) == ("It is 3pm.", "Let me see.")  # type: ignore[attr-defined]

    stream = await client.chat.completions.with_raw_response.create(
        model="claude-haiku-4-5", messages=ASK, stream=True
    )
    raw = await stream.http_response.aread()
    assert SIGNATURE.encode() not in raw and b"EmwKAhgBEgy3va3pzix" not in raw
    chunks = openai_chunks(raw)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    reasoning = "".join(d.get("reasoning_content") or "" for d in deltas)
    assert reasoning == "Paris is in France; it is 3pm there."
    assert "".join(d.get("content") or "" for d in deltas) == "It is 3pm."


# 8. Prompt caching asked for through the OpenAI surface ------------------------------

EPHEMERAL = {"type": "ephemeral"}
PIXEL = "data:image/png;base64,iVBORw0KGgo="


async def test_cache_control_reaches_anthropic_and_cache_reads_come_back(
    claude: FakeAnthropic, gateway: Any, sdk: Any
) -> None:
    claude.then(
        reply_sse(
            anthropic_sse(
                start(input_tokens=4, cache_read_input_tokens=2000, cache_creation_input_tokens=6),
                block(0, {"type": "text", "text": ""}),
                delta(0, type="text_delta", text="Hi."),
                stop(0),
                *end("end_turn"),
            )
        )
    )
    gw = await gateway(claude_config(claude.url))
    messages: Any = [
        {
            "role": "system",
            "content": [
                {"type": "text", "text": "You are terse."},
                {"type": "text", "text": "A long manual...", "cache_control": EPHEMERAL},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": PIXEL}, "cache_control": EPHEMERAL},
                {
                    "type": "text",
                    "text": "Describe it.",
                    "cache_control": {**EPHEMERAL, "ttl": "1h"},
                },
                {"type": "text", "text": "Briefly."},
            ],
        },
    ]
    tools: Any = [{**WEATHER, "cache_control": EPHEMERAL}, NOW]
    stream = await sdk(gw).chat.completions.create(
        model="claude-haiku-4-5",
        messages=messages,
        tools=tools,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    sent = claude.seen[0].body
    assert claude.problems == []
    assert sent["system"] == [
        {"type": "text", "text": "You are terse."},
        {"type": "text", "text": "A long manual...", "cache_control": EPHEMERAL},
    ]
    image, text, plain = sent["messages"][0]["content"]
    assert image["type"] == "image" and image["cache_control"] == EPHEMERAL
    assert text == {
        "type": "text",
        "text": "Describe it.",
        "cache_control": {"type": "ephemeral", "ttl": "1h"},
    }
    assert plain == {"type": "text", "text": "Briefly."}
    assert [tool.get("cache_control") for tool in sent["tools"]] == [EPHEMERAL, None]
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert (usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens) == (2010, 2000)


async def test_system_without_cache_control_stays_one_string(
    claude: FakeAnthropic, gateway: Any, sdk: Any
) -> None:
    gw = await gateway(claude_config(claude.url))
    await sdk(gw).chat.completions.create(
        model="claude-haiku-4-5",
        messages=[
            {
                "role": "system",
                "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "terse."}],
            },
            {"role": "developer", "content": "Use French."},
            *ASK,
        ],
    )
    assert claude.seen[0].body["system"] == "Be terse.\n\nUse French."


# The anthropic SDK on /v1/messages, served by an OpenAI provider ----------------------

QUESTION = "Summarise this: " + "lorem ipsum " * 40  # 496 characters: about 124 tokens


def gpt_config(url: str) -> str:
    return f"""
providers:
  gpt:
    type: openai
    base_url: {url}
    api_key: {PROVIDER_KEY}
    models: [gpt-4o-mini]
    max_retries: 0
"""


async def test_stream_starts_with_the_prompt_estimate_and_ends_with_the_real_usage(
    fake: FakeOpenAI, gateway: Any
) -> None:
    gw = await gateway(gpt_config(fake.url))
    request: Any = {
        "model": "gpt-4o-mini",
        "max_tokens": 100,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": QUESTION}],
    }
    async with anthropic_client(gw) as client:
        async with client.messages.with_streaming_response.create(
            **request, stream=True
        ) as response:
            events = anthropic_events(b"".join([part async for part in response.iter_bytes()]))
        async with client.messages.stream(**request) as stream:
            final = await stream.get_final_message()
    first = events[0]["message"]
    estimate = (len("Be brief.") + len(QUESTION) + 3) // 4
    assert first["usage"] == {"input_tokens": estimate, "output_tokens": 0}
    assert events[-2]["usage"] == {"input_tokens": 9, "output_tokens": 3}  # the provider's
    assert (final.usage.input_tokens, final.usage.output_tokens) == (9, 3)
    assert first["id"] == final.id == "msg_fake123"


async def test_message_ids_request_ids_and_errors_look_like_anthropic(
    fake: FakeOpenAI, gateway: Any
) -> None:
    gw = await gateway(gpt_config(fake.url))
    async with anthropic_client(gw) as client:
        raw = await client.messages.with_raw_response.create(
            model="gpt-4o-mini", max_tokens=50, messages=[{"role": "user", "content": "Hi"}]
        )
        message = await raw.parse()
        with pytest.raises(anthropic.NotFoundError) as refused:
            await client.messages.create(
                model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "Hi"}]
            )
    assert message.id == "msg_fake123"  # the provider's chatcmpl-fake123
    assert message._request_id == raw.headers["X-Request-ID"]
    assert refused.value.request_id == refused.value.response.headers["X-Request-ID"]
    assert refused.value.request_id


async def test_openai_clients_get_no_anthropic_request_id_header(
    fake: FakeOpenAI, gateway: Any, sdk: Any
) -> None:
    gw = await gateway(gpt_config(fake.url))
    raw = await sdk(gw).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
    )
    assert raw.headers["X-Request-ID"] and "request-id" not in raw.headers


@pytest.mark.parametrize(
    ("thinking", "effort"),
    [
        ({"type": "enabled", "budget_tokens": 1024}, "low"),
        ({"type": "enabled", "budget_tokens": 2048}, "low"),
        ({"type": "enabled", "budget_tokens": 2049}, "medium"),
        ({"type": "enabled", "budget_tokens": 8192}, "medium"),
        ({"type": "enabled", "budget_tokens": 16000}, "high"),
        ({"type": "disabled"}, None),
        ({"type": "adaptive"}, None),
    ],
)
async def test_thinking_budget_becomes_reasoning_effort(
    fake: FakeOpenAI, gateway: Any, thinking: dict[str, Any], effort: str | None
) -> None:
    gw = await gateway(gpt_config(fake.url))
    async with anthropic_client(gw) as client:
        await client.messages.create(
            model="gpt-4o-mini",
            max_tokens=20000,
            thinking=thinking,  # type: ignore[arg-type]
            messages=[{"role": "user", "content": "Think."}],
        )
    assert fake.seen[0].body.get("reasoning_effort") == effort
    assert "thinking" not in fake.seen[0].body
