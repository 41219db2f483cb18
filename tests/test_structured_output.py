"""Structured output, reasoning effort and the parameters each translator drops or
refuses, end to end: the official openai SDK's ``.parse()`` and ``.stream()`` through
the gateway to fake Anthropic and Gemini providers speaking their real wire formats."""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest
from aiohttp import web
from pydantic import BaseModel

from tests.conftest import CLIENT_KEY, PROVIDER_KEY
from tests.fakes import Behaviour
from tests.provider_fakes import (
    FakeAnthropic,
    FakeGemini,
    anthropic_message,
    fixture_json,
    gemini_sse,
    reply_sse,
    serve,
)


class Event(BaseModel):
    title: str
    day: str
    people: list[str]


LUNCH = {"title": "Lunch", "day": "Friday", "people": ["Alice", "Bob"]}
ASK = [{"role": "user", "content": "Alice and Bob meet for lunch on Friday."}]


def config(claude_url: str = "http://127.0.0.1:9", gemini_url: str = "http://127.0.0.1:9") -> str:
    return f"""
providers:
  claude:
    type: anthropic
    base_url: {claude_url}
    api_key: {PROVIDER_KEY}
    models: [claude-haiku-4-5]
    max_retries: 0
  gem:
    type: gemini
    base_url: {gemini_url}/v1beta
    api_key: {PROVIDER_KEY}
    models: [gemini-2.5-flash]
    max_retries: 0
models:
  chain: [claude/claude-haiku-4-5, gem/gemini-2.5-flash]
"""


@pytest.fixture
async def gemini(aiohttp_server: Any) -> FakeGemini:
    fake = FakeGemini()
    await serve(aiohttp_server, fake)
    return fake


def _event(kind: str, **data: Any) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


def call_the_tool(answer: dict[str, Any]) -> Behaviour:
    """Claude's answer when a tool is forced: a call of that tool with ``answer`` as its
    input, JSON or streamed in small ``input_json_delta`` fragments."""

    async def behave(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        name = body["tool_choice"]["name"]
        message = anthropic_message("", body["model"])
        message["content"] = [{"type": "tool_use", "id": "toolu_1", "name": name, "input": answer}]
        message["stop_reason"] = "tool_use"
        if not body.get("stream"):
            return web.json_response(message)
        text = orjson.dumps(answer).decode()
        start = {**message, "content": [], "stop_reason": None}
        block = {"type": "tool_use", "id": "toolu_1", "name": name, "input": {}}
        events = [
            _event("message_start", message=start),
            _event("content_block_start", index=0, content_block=block),
            *[
                _event(
                    "content_block_delta",
                    index=0,
                    delta={"type": "input_json_delta", "partial_json": text[i : i + 7]},
                )
                for i in range(0, len(text), 7)
            ],
            _event("content_block_stop", index=0),
            _event(
                "message_delta",
                delta={"stop_reason": "tool_use", "stop_sequence": None},
                usage={"output_tokens": 30},
            ),
            _event("message_stop"),
        ]
        return await reply_sse(b"".join(events))(request, body)

    return behave


def gemini_json(answer: dict[str, Any]) -> Behaviour:
    """Gemini's answer in JSON mode: the JSON as text, streamed in three pieces."""

    async def behave(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        text = orjson.dumps(answer).decode()
        if request.query.get("alt") != "sse":
            reply = fixture_json("gemini/generate_text.json")
            reply["candidates"][0]["content"]["parts"] = [{"text": text}]
            return web.json_response(reply)
        third = len(text) // 3 + 1
        events = []
        for n in range(3):
            event = fixture_json("gemini/generate_text.json")
            event["candidates"][0]["content"]["parts"] = [
                {"text": text[n * third : (n + 1) * third]}
            ]
            if n < 2:
                del event["candidates"][0]["finishReason"]
            events.append(event)
        return await reply_sse(gemini_sse(events))(request, body)

    return behave


# Anthropic: json_schema as a forced tool call ---------------------------------------


async def test_parse_gets_the_pydantic_object_from_anthropic(
    claude: FakeAnthropic, gateway: Any, sdk: Any
) -> None:
    claude.then(call_the_tool(LUNCH))
    gw = await gateway(config(claude.url))
    completion = await sdk(gw).chat.completions.parse(
        model="claude-haiku-4-5", messages=ASK, response_format=Event
    )
    choice = completion.choices[0]
    assert choice.message.parsed == Event(**LUNCH)
    assert choice.finish_reason == "stop"
    assert not choice.message.tool_calls
    assert claude.problems == []
    sent = claude.seen[0].body
    assert sent["tool_choice"] == {"type": "tool", "name": "Event"}
    [tool] = sent["tools"]
    assert tool["name"] == "Event"
    assert tool["input_schema"]["required"] == ["title", "day", "people"]


async def test_parse_streamed_gets_the_pydantic_object_from_anthropic(
    claude: FakeAnthropic, gateway: Any, sdk: Any
) -> None:
    claude.then(call_the_tool(LUNCH))
    gw = await gateway(config(claude.url))
    async with sdk(gw).chat.completions.stream(
        model="claude-haiku-4-5", messages=ASK, response_format=Event
    ) as stream:
        deltas = [e.delta async for e in stream if e.type == "content.delta"]
        final = await stream.get_final_completion()
    assert len(deltas) > 3  # the tool input's fragments arrive as content deltas
    assert "".join(deltas) == orjson.dumps(LUNCH).decode()
    assert final.choices[0].message.parsed == Event(**LUNCH)
    assert final.choices[0].finish_reason == "stop"
    assert claude.seen[0].body["stream"] is True


async def test_json_schema_beside_client_tools_lets_claude_call_them(
    claude: FakeAnthropic, gateway: Any, sdk: Any
) -> None:
    weather = {
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
    }
    schema = {"name": "Event", "schema": Event.model_json_schema()}
    gw = await gateway(config(claude.url))
    await sdk(gw).chat.completions.create(
        model="claude-haiku-4-5",
        messages=ASK,
        response_format={"type": "json_schema", "json_schema": schema},
        tools=[weather],
    )
    sent = claude.seen[0].body
    assert [t["name"] for t in sent["tools"]] == ["get_weather", "Event"]
    assert sent["tool_choice"] == {"type": "any"}


async def test_json_object_becomes_a_system_instruction(
    claude: FakeAnthropic, gateway: Any, sdk: Any
) -> None:
    gw = await gateway(config(claude.url))
    await sdk(gw).chat.completions.create(
        model="claude-haiku-4-5",
        messages=[{"role": "system", "content": "Be brief."}, *ASK],
        response_format={"type": "json_object"},
    )
    system = claude.seen[0].body["system"]
    assert system.startswith("Be brief.\n\n")
    assert "JSON object only" in system
    assert "tools" not in claude.seen[0].body


# reasoning_effort → thinking budget ---------------------------------------------------


async def test_reasoning_effort_reaches_anthropic_as_a_thinking_budget(
    claude: FakeAnthropic, gateway: Any, sdk: Any
) -> None:
    gw = await gateway(config(claude.url))
    response = await sdk(gw).chat.completions.with_raw_response.create(
        model="claude-haiku-4-5",
        messages=ASK,
        reasoning_effort="medium",
        max_completion_tokens=1000,
        temperature=0.2,
    )
    sent = claude.seen[0].body
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert sent["max_tokens"] == 9192  # the budget must fit under max_tokens
    assert "temperature" not in sent  # Anthropic refuses sampling changes with thinking
    assert response.headers["X-LLMGW-Dropped-Params"] == "temperature"
    assert claude.problems == []


async def test_reasoning_effort_with_a_schema_is_dropped_for_anthropic(
    claude: FakeAnthropic, gateway: Any, sdk: Any
) -> None:
    claude.then(call_the_tool(LUNCH))
    gw = await gateway(config(claude.url))
    response = await sdk(gw).chat.completions.with_raw_response.parse(
        model="claude-haiku-4-5", messages=ASK, response_format=Event, reasoning_effort="low"
    )
    assert "thinking" not in claude.seen[0].body  # thinking refuses a forced tool
    assert response.headers["X-LLMGW-Dropped-Params"] == "reasoning_effort"
    assert response.parse().choices[0].message.parsed == Event(**LUNCH)


async def test_reasoning_effort_reaches_gemini_as_a_thinking_budget(
    gemini: FakeGemini, gateway: Any, sdk: Any
) -> None:
    gw = await gateway(config(gemini_url=gemini.url))
    await sdk(gw).chat.completions.create(
        model="gemini-2.5-flash", messages=ASK, reasoning_effort="low"
    )
    assert gemini.seen[0].body["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 1024}
    assert gemini.problems == []


# Gemini: responseJsonSchema ----------------------------------------------------------


async def test_parse_gets_the_pydantic_object_from_gemini(
    gemini: FakeGemini, gateway: Any, sdk: Any
) -> None:
    gemini.then(gemini_json(LUNCH))
    gw = await gateway(config(gemini_url=gemini.url))
    completion = await sdk(gw).chat.completions.parse(
        model="gemini-2.5-flash", messages=ASK, response_format=Event
    )
    assert completion.choices[0].message.parsed == Event(**LUNCH)
    generation = gemini.seen[0].body["generationConfig"]
    assert generation["responseMimeType"] == "application/json"
    assert generation["responseJsonSchema"]["required"] == ["title", "day", "people"]
    assert gemini.problems == []


async def test_parse_streamed_gets_the_pydantic_object_from_gemini(
    gemini: FakeGemini, gateway: Any, sdk: Any
) -> None:
    gemini.then(gemini_json(LUNCH))
    gw = await gateway(config(gemini_url=gemini.url))
    async with sdk(gw).chat.completions.stream(
        model="gemini-2.5-flash", messages=ASK, response_format=Event
    ) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].message.parsed == Event(**LUNCH)
    assert "alt=sse" in gemini.seen[0].path


# Dropped parameters are named on the answer -----------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_dropped_params_are_named_in_a_header(
    claude: FakeAnthropic, gemini: FakeGemini, gateway: Any, stream: bool
) -> None:
    gw = await gateway(config(claude.url, gemini.url))
    auth = {"Authorization": f"Bearer {CLIENT_KEY}"}
    body = {"messages": ASK, "seed": 7, "logit_bias": {"50256": -100}, "user": "u1"}
    body |= {"stream": stream, "n": 1, "logprobs": False}  # defaults ask for nothing
    claude_answer = await gw.post(
        "/v1/chat/completions", json={"model": "claude-haiku-4-5", **body}, headers=auth
    )
    gemini_answer = await gw.post(
        "/v1/chat/completions", json={"model": "gemini-2.5-flash", **body}, headers=auth
    )
    for answer in (claude_answer, gemini_answer):
        assert answer.status == 200
        await answer.read()
    assert claude_answer.headers["X-LLMGW-Dropped-Params"] == "seed, logit_bias"
    assert gemini_answer.headers["X-LLMGW-Dropped-Params"] == "logit_bias, user"
    assert "seed" not in claude.seen[0].body
    assert claude.seen[0].body["metadata"] == {"user_id": "u1"}
    assert gemini.seen[0].body["generationConfig"]["seed"] == 7


async def test_nothing_dropped_no_header(claude: FakeAnthropic, gateway: Any, sdk: Any) -> None:
    gw = await gateway(config(claude.url))
    response = await sdk(gw).chat.completions.with_raw_response.create(
        model="claude-haiku-4-5", messages=ASK, temperature=0.5, max_tokens=50
    )
    assert "X-LLMGW-Dropped-Params" not in response.headers


# What no target can serve is named in the 400 ----------------------------------------


async def test_n_above_one_to_anthropic_is_a_400_naming_n(
    claude: FakeAnthropic, gateway: Any, sdk: Any
) -> None:
    gw = await gateway(config(claude.url))
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(gw).chat.completions.create(model="claude-haiku-4-5", messages=ASK, n=2)
    error = caught.value
    assert error.param == "n"
    assert error.body is not None
    assert error.body["message"] == (  # type: ignore[index]
        "The model 'claude-haiku-4-5' cannot serve this request: "
        "anthropic providers do not support n > 1"
    )
    assert claude.seen == []


async def test_audio_part_to_anthropic_is_a_400_naming_the_part(
    claude: FakeAnthropic, gateway: Any, sdk: Any
) -> None:
    gw = await gateway(config(claude.url))
    audio = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    content = [{"type": "text", "text": "What is said?"}, audio]
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(gw).chat.completions.create(
            model="claude-haiku-4-5", messages=[{"role": "user", "content": content}]
        )
    assert caught.value.param == "messages[0].content[1]"
    assert "anthropic providers do not support 'input_audio' content parts" in str(caught.value)


async def test_a_target_that_supports_it_still_answers(
    claude: FakeAnthropic, gemini: FakeGemini, gateway: Any, sdk: Any
) -> None:
    gw = await gateway(config(claude.url, gemini.url))
    response = await sdk(gw).chat.completions.with_raw_response.create(
        model="chain", messages=ASK, n=2
    )
    assert response.headers["X-LLMGW-Provider"] == "gem"
    assert claude.seen == []
    assert gemini.seen[0].body["generationConfig"]["candidateCount"] == 2


async def test_an_unknown_reasoning_effort_is_a_400_naming_it(
    claude: FakeAnthropic, gateway: Any, sdk: Any
) -> None:
    gw = await gateway(config(claude.url))
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(gw).chat.completions.create(
            model="claude-haiku-4-5",
            messages=ASK,
            reasoning_effort="extreme",  # type: ignore[arg-type]
        )
    assert caught.value.param == "reasoning_effort"
    assert claude.seen == []
