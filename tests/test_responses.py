"""``POST /v1/responses`` end to end with the official openai SDK: relayed unchanged to
OpenAI, translated through chat for Anthropic, Gemini and the mock (text,
instructions, multi-turn items, function tools and outputs, ``text.format``, usage),
streamed through the SDK's ``responses.stream()`` helper; ``previous_response_id``
refused where no state is kept; limits and metrics under the ``responses`` label."""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest

from tests.conftest import PROVIDER_KEY, one_provider
from tests.fakes import FakeOpenAI, reply_json
from tests.provider_fakes import (
    FakeAnthropic,
    FakeGemini,
    fixture,
    fixture_json,
    reply_sse,
    serve,
)

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather at a place",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
}
TURNS: list[Any] = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "type": "function_call",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": '{"location": "Paris"}',
    },
    {"type": "function_call_output", "call_id": "call_1", "output": "18C and sunny"},
    {"role": "user", "content": [{"type": "input_text", "text": "And tomorrow?"}]},
]
MOCK = "providers:\n  demo: {type: mock, models: [echo]}\n"


@pytest.fixture
async def claude(aiohttp_server: Any) -> FakeAnthropic:
    fake = FakeAnthropic()
    await serve(aiohttp_server, fake)
    return fake


@pytest.fixture
async def gemini(aiohttp_server: Any) -> FakeGemini:
    fake = FakeGemini()
    await serve(aiohttp_server, fake)
    return fake


def anthropic_config(url: str) -> str:
    return f"""
providers:
  claude:
    type: anthropic
    base_url: {url}
    api_key: {PROVIDER_KEY}
    models: [claude-sonnet-4-5]
    max_retries: 0
"""


def gemini_config(url: str) -> str:
    return f"""
providers:
  gem:
    type: gemini
    base_url: {url}/v1beta
    api_key: {PROVIDER_KEY}
    models: [gemini-2.5-flash]
    max_retries: 0
"""


async def test_mock_answers_text_and_usage(gateway: Any, sdk: Any) -> None:
    gw = await gateway(MOCK)
    answer = await sdk(gw).responses.create(
        model="echo", instructions="Be brief.", input="hello there"
    )
    assert answer.object == "response" and answer.status == "completed"
    assert answer.output_text == "hello there"
    assert answer.id.startswith("resp_")
    assert answer.usage is not None and answer.usage.output_tokens == 2
    assert answer.usage.total_tokens == answer.usage.input_tokens + 2
    metrics = await (await gw.get("/metrics")).text()
    assert 'endpoint="responses"' in metrics


async def test_mock_streams_through_the_sdk_helper(gateway: Any, sdk: Any) -> None:
    gw = await gateway(MOCK)
    kinds: list[str] = []
    async with sdk(gw).responses.stream(model="echo", input="one two three") as stream:
        async for event in stream:
            kinds.append(event.type)
        final = await stream.get_final_response()
    assert final.output_text == "one two three"
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert kinds.count("response.output_text.delta") == 3
    assert final.usage is not None and final.usage.output_tokens == 3


async def test_openai_relays_the_answer_unchanged(fake: FakeOpenAI, gateway: Any) -> None:
    recorded = fixture("openai/responses_text.json")
    fake.then(reply_json(orjson.loads(recorded)))
    gw = await gateway(one_provider(fake.url))
    body = {"model": "gpt-4o-mini", "input": "Hi", "previous_response_id": "resp_earlier"}
    response = await gw.post("/v1/responses", json=body)
    assert response.status == 200
    assert orjson.loads(await response.read()) == orjson.loads(recorded)
    assert fake.seen[0].path == "/v1/responses"
    assert fake.seen[0].body == body  # state kept upstream: previous_response_id passes


async def test_openai_stream_relayed_through_the_sdk_helper(
    fake: FakeOpenAI, gateway: Any, sdk: Any
) -> None:
    fake.then(reply_sse(fixture("openai/responses_stream.sse")))
    gw = await gateway(one_provider(fake.url))
    async with sdk(gw).responses.stream(model="gpt-4o-mini", input="Hi") as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert deltas == ["Hello", " from", " OpenAI."]
    assert final.output_text == "Hello from OpenAI."
    assert fake.seen[0].path == "/v1/responses"
    recent = (await (await gw.get("/api/v1/requests?limit=1")).json())["data"][0]
    assert recent["endpoint"] == "responses"  # usage read from response.completed
    assert (recent["prompt_tokens"], recent["completion_tokens"]) == (11, 5)


async def test_anthropic_multi_turn_tools_and_function_call_answer(
    claude: FakeAnthropic, gateway: Any, sdk: Any
) -> None:
    claude.then(reply_json(fixture_json("anthropic/message_tool_use.json")))
    gw = await gateway(anthropic_config(claude.url))
    answer = await sdk(gw).responses.create(
        model="claude-sonnet-4-5",
        instructions="Be brief.",
        input=TURNS,
        tools=[WEATHER],
        max_output_tokens=300,
    )
    assert claude.problems == []
    sent = claude.seen[0].body
    assert sent["system"] == "Be brief." or sent["system"][0]["text"] == "Be brief."
    assert sent["max_tokens"] == 300
    assert sent["tools"][0]["name"] == "get_weather"
    roles = [m["role"] for m in sent["messages"]]
    assert roles == ["user", "assistant", "user"]
    assert sent["messages"][1]["content"][0]["type"] == "tool_use"
    assert sent["messages"][1]["content"][0]["id"] == "call_1"
    result = sent["messages"][2]["content"][0]
    assert (result["type"], result["tool_use_id"]) == ("tool_result", "call_1")
    kinds = [item.type for item in answer.output]
    assert kinds == ["message", "function_call"]
    call = answer.output[1]
    assert call.type == "function_call" and call.name == "get_weather"
    assert orjson.loads(call.arguments) == {"location": "San Francisco, CA", "unit": "celsius"}
    assert call.call_id == "toolu_01A09q90qw90lq917835lq9"
    assert answer.usage is not None
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == (484, 74)


async def test_anthropic_stream_through_the_sdk_helper(
    claude: FakeAnthropic, gateway: Any, sdk: Any
) -> None:
    claude.then(reply_sse(fixture("anthropic/stream_tool_use.sse"), size=37))
    gw = await gateway(anthropic_config(claude.url))
    kinds: list[str] = []
    async with sdk(gw).responses.stream(
        model="claude-sonnet-4-5", input="Weather in SF?", tools=[WEATHER]
    ) as stream:
        async for event in stream:
            kinds.append(event.type)
        final = await stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    assert "response.function_call_arguments.done" in kinds
    assert kinds[-1] == "response.completed"
    assert final.output_text.startswith("Okay, let's check the weather")
    calls = [item for item in final.output if item.type == "function_call"]
    assert [call.name for call in calls] == ["get_weather", "get_time"]
    assert [call.call_id for call in calls] == ["toolu_01T1x1fJ34qAmk2tNTrN7Up6", "toolu_02Ab"]
    assert orjson.loads(calls[0].arguments)["unit"] == "fahrenheit"
    assert orjson.loads(calls[1].arguments) == {"tz": "PST"}
    assert final.usage is not None and final.usage.input_tokens == 472


async def test_gemini_stream_through_the_sdk_helper(
    gemini: FakeGemini, gateway: Any, sdk: Any
) -> None:
    gw = await gateway(gemini_config(gemini.url))
    async with sdk(gw).responses.stream(
        model="gemini-2.5-flash", instructions="Be brief.", input="Weather in Paris?"
    ) as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(deltas) == final.output_text == "echo: Weather in Paris?"
    assert gemini.problems == []
    sent = gemini.seen[0].body
    assert sent["systemInstruction"]["parts"][0]["text"] == "Be brief."
    assert final.usage is not None and final.usage.output_tokens > 0


async def test_gemini_function_calls_streamed(gemini: FakeGemini, gateway: Any, sdk: Any) -> None:
    gemini.then(reply_sse(fixture("gemini/stream_function_call.sse")))
    gw = await gateway(gemini_config(gemini.url))
    async with sdk(gw).responses.stream(
        model="gemini-2.5-flash", input="Weather and time in Paris?", tools=[WEATHER]
    ) as stream:
        final = await stream.get_final_response()
    names = [item.name for item in final.output if item.type == "function_call"]
    assert names == ["get_weather", "get_time"]
    assert final.output_text == "Let me look that up."


async def test_json_schema_text_format_reaches_gemini(
    gemini: FakeGemini, gateway: Any, sdk: Any
) -> None:
    gw = await gateway(gemini_config(gemini.url))
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    await sdk(gw).responses.create(
        model="gemini-2.5-flash",
        input="Where?",
        text={"format": {"type": "json_schema", "name": "place", "schema": schema}},
    )
    config = gemini.seen[0].body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert gemini.problems == []


async def test_previous_response_id_is_refused_where_no_state_is_kept(
    claude: FakeAnthropic, gateway: Any, sdk: Any
) -> None:
    gw = await gateway(anthropic_config(claude.url))
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk(gw).responses.create(
            model="claude-sonnet-4-5", input="and then?", previous_response_id="resp_1"
        )
    assert refused.value.body["param"] == "previous_response_id"  # type: ignore[index]
    assert "previous_response_id" in refused.value.body["message"]  # type: ignore[index]
    assert claude.seen == []


async def test_hosted_tools_are_refused_when_translated(gateway: Any, sdk: Any) -> None:
    gw = await gateway(MOCK)
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk(gw).responses.create(model="echo", input="news?", tools=[{"type": "web_search"}])
    assert refused.value.body["param"] == "tools[0]"  # type: ignore[index]


async def test_missing_input_is_a_400(gateway: Any) -> None:
    gw = await gateway(MOCK)
    response = await gw.post("/v1/responses", json={"model": "echo"})
    assert response.status == 400
    assert (await response.json())["error"]["param"] == "input"


async def test_endpoint_limit_applies_to_responses_only(gateway: Any, sdk: Any) -> None:
    gw = await gateway(MOCK + "limits:\n  endpoints:\n    responses: {rpm: 1}\n")
    client = sdk(gw)
    await client.responses.create(model="echo", input="one")
    with pytest.raises(openai.RateLimitError):
        await client.responses.create(model="echo", input="two")
    chat = await client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "three"}]
    )
    assert chat.choices[0].message.content == "three"


async def test_previous_response_id_goes_to_the_target_that_keeps_state(
    claude: FakeAnthropic, fake: FakeOpenAI, gateway: Any, sdk: Any
) -> None:
    fake.then(reply_json(orjson.loads(fixture("openai/responses_text.json"))))
    gw = await gateway(
        f"""
providers:
  claude: {{type: anthropic, base_url: {claude.url}, api_key: {PROVIDER_KEY}, models: [c]}}
  up: {{type: openai, base_url: {fake.url}, api_key: {PROVIDER_KEY}, models: [g]}}
models:
  chain: [claude/c, up/g]
"""
    )
    answer = await sdk(gw).responses.create(
        model="chain", input="and then?", previous_response_id="resp_1"
    )
    assert answer.output_text == "Hello from OpenAI."
    assert claude.seen == []  # skipped: it keeps no state
    assert fake.seen[0].body["previous_response_id"] == "resp_1"
