"""README's table of OpenAI chat parameters agrees with the translators' own tables,
and the translators do what their tables say; the answer tool's stream, split anywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from llmgw.adapter import Adapter
from llmgw.config import parse
from llmgw.core import Call, Unsupported
from llmgw.translate import params as p
from tests.provider_fakes import SPLITS, collect_chat, fixture, openai_chunks, translate

README = Path(__file__).parent.parent / "README.md"
CONFIG = parse(
    """
providers:
  claude: {type: anthropic, api_key: sk-ant-test}
  gem: {type: gemini, api_key: g-test}
""",
    environ={},
)
# A value for each parameter that asks for something (not null, not the default).
ASKING: dict[str, Any] = {
    "audio": {"voice": "alloy", "format": "wav"},
    "frequency_penalty": 0.5,
    "function_call": "auto",
    "functions": [{"name": "f", "parameters": {"type": "object"}}],
    "logit_bias": {"50256": -100},
    "logprobs": True,
    "max_completion_tokens": 100,
    "max_tokens": 100,
    "metadata": {"team": "a"},
    "modalities": ["text", "audio"],
    "n": 2,
    "parallel_tool_calls": False,
    "prediction": {"type": "content", "content": "x"},
    "presence_penalty": 0.5,
    "prompt_cache_key": "k",
    "reasoning_effort": "low",
    "response_format": {"type": "json_object"},
    "safety_identifier": "s",
    "seed": 7,
    "service_tier": "flex",
    "stop": ["\n"],
    "store": True,
    "stream": True,
    "stream_options": {"include_usage": True},
    "temperature": 0.5,
    "tool_choice": "auto",
    "tools": [{"type": "function", "function": {"name": "f"}}],
    "top_logprobs": 2,
    "top_p": 0.5,
    "user": "u",
    "verbosity": "low",
    "web_search_options": {},
}


def readme_table() -> dict[str, list[str]]:
    """The rows of README's parameter table: name → cells."""
    lines = README.read_text().splitlines()
    start = lines.index("| Parameter | `openai`, `azure` | `anthropic` | `gemini` | `mock` |")
    rows: dict[str, list[str]] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        name, *cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[name.strip("`")] = cells
    return rows


def test_readme_lists_every_parameter_with_its_fate_in_the_code() -> None:
    rows = readme_table()
    assert list(rows) == list(p.OPENAI_PARAMS)
    assert set(p.ANTHROPIC) == set(p.GEMINI) == set(p.OPENAI_PARAMS)
    for name, (passed, anthropic, gemini, _mock) in rows.items():
        assert passed == "passed", name
        assert anthropic.split()[0].rstrip(":") == p.ANTHROPIC[name], name
        assert gemini.split()[0].rstrip(":") == p.GEMINI[name], name


def test_every_parameter_value_gets_its_tables_fate() -> None:
    assert set(ASKING) == set(p.OPENAI_PARAMS) - {"model", "messages"}
    for kind in ("anthropic", "gemini"):
        provider = CONFIG.providers["claude" if kind == "anthropic" else "gem"]
        for name, value in ASKING.items():
            body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], name: value}
            call = Call("chat", "m", name == "stream", body, orjson.dumps(body))
            fate = p.TABLES[kind][name]
            if fate == "rejected":
                with pytest.raises(Unsupported) as caught:
                    Adapter.of(kind).request(call, "m", provider)
                assert caught.value.param == name
                continue
            request = Adapter.of(kind).request(call, "m", provider)
            assert (name in request.dropped) == (fate == "dropped"), (kind, name)


def test_defaults_and_nulls_ask_for_nothing() -> None:
    body = {"model": "m", "messages": [], "n": 1, "logprobs": False, "seed": None}
    body |= {"modalities": ["text"], "parallel_tool_calls": True, "store": False}
    assert p.sort(body, "anthropic") == ()
    assert p.sort({"seed": 1, "logit_bias": {}, "x_new": 1}, "anthropic") == (
        "seed",
        "logit_bias",
        "x_new",
    )


def _answer_stream(partials: list[str]) -> bytes:
    """An Anthropic stream whose one block is a call of the answer tool ``Event``."""
    head = fixture("anthropic/stream_tool_use.sse").split(b"\n\n")[0] + b"\n\n"
    head = head.replace(b',"message":', b',\ndata: "message":')  # one event, two data lines

    def event(kind: str, **data: Any) -> bytes:
        return f"event: {kind}\ndata: ".encode() + orjson.dumps({"type": kind, **data}) + b"\n\n"

    block = {"type": "tool_use", "id": "toolu_1", "name": "Event", "input": {}}
    deltas = [
        event("content_block_delta", index=0, delta={"type": "input_json_delta", "partial_json": s})
        for s in partials
    ]
    return b"".join(
        [
            head,
            event("content_block_start", index=0, content_block=block),
            *deltas,
            event("content_block_stop", index=0),
            event("message_delta", delta={"stop_reason": "tool_use"}, usage={"output_tokens": 9}),
            event("message_stop"),
        ]
    )


@pytest.mark.parametrize("size", SPLITS)
@pytest.mark.parametrize(
    ("partials", "text"),
    [(["", '{"title":', ' "Lunch"}'], '{"title": "Lunch"}'), ([], "{}")],
)
def test_the_answer_tools_stream_becomes_content(size: int, partials: list[str], text: str) -> None:
    schema = {"name": "Event", "schema": {"type": "object"}}
    body = {
        "model": "c",
        "messages": [],
        "response_format": {"type": "json_schema", "json_schema": schema},
    }
    call = Call("chat", "c", True, body, orjson.dumps(body))
    translator = Adapter.of("anthropic").stream(call, "c")
    out = collect_chat(openai_chunks(translate(translator, _answer_stream(partials), size)))
    assert out["text"] == text
    assert out["tool_calls"] == {}
    assert out["finish"] == "stop"
    assert translator is not None and translator.done
    assert translator.usage.completion_tokens == 9
    assert translator.usage.prompt_tokens == 472
