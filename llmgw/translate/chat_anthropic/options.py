"""OpenAI's structured output and reasoning options, on Anthropic's Messages API.

``response_format: json_schema`` becomes a forced call of one tool named after the
schema, whose ``input_schema`` is the schema; the call's input comes back as the
assistant's ``content`` (JSON text, ``finish_reason: stop``), streamed deltas
included. This works on every Claude model; Anthropic's native structured outputs
(``output_format`` behind the ``structured-outputs-2025-11-13`` beta) exist for a few
models only and are not used. ``response_format: json_object`` becomes a system
instruction to answer with one JSON object only (an instruction, not a guarantee:
prefilling ``{`` is refused with extended thinking and by newer models).

``reasoning_effort`` becomes extended thinking with a fixed budget (``BUDGETS``).
Anthropic wants the budget below ``max_tokens``: when it would not fit, the budget
is added to ``max_tokens`` so that the visible answer keeps the room asked for.
Thinking refuses a forced tool and sampling changes, so with a forced tool (a
schema, or ``tool_choice`` required or named) ``reasoning_effort`` is dropped, and
with thinking on ``temperature`` (other than 1) and ``top_p`` (below 0.95) are
dropped; every drop is named in ``X-LLMGW-Dropped-Params``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson

from llmgw.core import StreamTranslator, Unsupported
from llmgw.sse import Decoder, Event, encode
from llmgw.translate import openai_chat as oa

BUDGETS: Mapping[str, int | None] = MappingProxyType(
    {
        "none": None,
        "minimal": 1024,  # Anthropic's smallest budget
        "low": 2048,
        "medium": 8192,
        "high": 24576,
        "xhigh": 32768,
    }
)
JSON_OBJECT_INSTRUCTION = (
    "Answer with a single JSON object only: no text before or after it, no code fences."
)
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_DEFAULT_TOOL = "json_answer"
_FORCED = ("any", "tool")


def answer_tool(body: Mapping[str, Any]) -> str | None:
    """The name of the tool that carries a ``json_schema`` answer, if the request has one."""
    response_format = oa.obj(body.get("response_format"))
    if response_format.get("type") != "json_schema":
        return None
    name = oa.obj(response_format.get("json_schema")).get("name")
    return name if isinstance(name, str) and _TOOL_NAME.match(name) else _DEFAULT_TOOL


def apply(body: Mapping[str, Any], out: dict[str, Any]) -> tuple[str, ...]:
    """Add the structured output and thinking settings to the Messages request ``out``
    (built from ``body``); returns the parameters that had to be dropped for them."""
    _response_format(body, out)
    return _thinking(body, out)


def _response_format(body: Mapping[str, Any], out: dict[str, Any]) -> None:
    response_format = oa.obj(body.get("response_format"))
    kind = response_format.get("type")
    if kind == "json_object":
        system = out.get("system")
        out["system"] = (
            f"{system}\n\n{JSON_OBJECT_INSTRUCTION}" if system else (JSON_OBJECT_INSTRUCTION)
        )
    elif kind == "json_schema":
        name = answer_tool(body)
        assert name is not None
        spec = oa.obj(response_format.get("json_schema"))
        schema = spec.get("schema", {"type": "object"})
        if not isinstance(schema, dict) or schema.get("type", "object") != "object":
            raise Unsupported(
                "anthropic providers do not support a json_schema whose root is not an object",
                param="response_format",
            )
        tool: dict[str, Any] = {"name": name, "input_schema": {"type": "object", **schema}}
        tool["description"] = str(
            spec.get("description") or "Give your answer as this tool's input."
        )
        out["tools"] = [*out.get("tools", []), tool]
        choice = oa.obj(out.get("tool_choice"))
        forced: dict[str, Any] = {"type": "tool", "name": name}
        if len(out["tools"]) > 1 and choice.get("type") in (None, "auto"):
            forced = {"type": "any"}  # the answer, or a call of one of the client's tools
        elif len(out["tools"]) > 1 and choice.get("type") != "none":
            forced = dict(choice)  # the client's own choice of a tool to call
        if choice.get("disable_parallel_tool_use"):
            forced["disable_parallel_tool_use"] = True
        out["tool_choice"] = forced
    elif kind not in (None, "text"):
        raise Unsupported(
            f"anthropic providers do not support response_format {kind!r}",
            param="response_format",
        )


def _thinking(body: Mapping[str, Any], out: dict[str, Any]) -> tuple[str, ...]:
    effort = body.get("reasoning_effort")
    if effort is None:
        return ()
    if not isinstance(effort, str) or effort not in BUDGETS:
        raise Unsupported(
            f"anthropic providers do not support reasoning_effort {effort!r}",
            param="reasoning_effort",
        )
    budget = BUDGETS[effort]
    if budget is None:
        return ()
    if oa.obj(out.get("tool_choice")).get("type") in _FORCED:
        return ("reasoning_effort",)  # thinking refuses a forced tool
    out["thinking"] = {"type": "enabled", "budget_tokens": budget}
    if out["max_tokens"] <= budget:
        out["max_tokens"] += budget
    dropped = []
    if out.get("temperature", 1) != 1:
        dropped.append("temperature")
        del out["temperature"]
    if out.get("top_p", 1) < 0.95:
        dropped.append("top_p")
        del out["top_p"]
    return tuple(dropped)


# The answer tool's call → the assistant's content -----------------------------------


def answer_message(body: Mapping[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic message with the answer tool's call rewritten as its text."""
    name = answer_tool(body)
    if name is None:
        return message
    blocks = []
    for block in oa.items(message.get("content")):
        if block.get("type") == "tool_use" and block.get("name") == name:
            block = {"type": "text", "text": orjson.dumps(block.get("input") or {}).decode()}
        blocks.append(block)
    rewritten = {**message, "content": blocks}
    if message.get("stop_reason") == "tool_use" and not any(
        b.get("type") == "tool_use" for b in blocks
    ):
        rewritten["stop_reason"] = "end_turn"
    return rewritten


def answer_stream(body: Mapping[str, Any], inner: StreamTranslator) -> StreamTranslator:
    """``inner`` fed with the answer tool's events rewritten as text events."""
    name = answer_tool(body)
    return inner if name is None else AnswerStream(name, inner)


class AnswerStream:
    """Anthropic stream events in, rewritten, then fed to the chat translator.

    The answer tool's ``content_block_start`` becomes a text block, its
    ``input_json_delta`` fragments ``text_delta``s (``{}`` when it sent none), and
    ``stop_reason: tool_use`` becomes ``end_turn`` unless a client tool was called.
    """

    def __init__(self, name: str, inner: StreamTranslator) -> None:
        self._name = name
        self._inner = inner
        self._decoder = Decoder()
        self._answers: dict[int, bool] = {}  # answer block index → whether it had input
        self._called = False  # a client tool was called
        self.usage, self.error, self.done = inner.usage, inner.error, inner.done

    def feed(self, chunk: bytes) -> bytes:
        events = self._decoder.feed(chunk)
        return self._sync(self._inner.feed(b"".join(self._rewrite(e) for e in events)))

    def finish(self) -> bytes:
        tail = self._inner.feed(b"".join(self._rewrite(e) for e in self._decoder.flush()))
        return self._sync(tail + self._inner.finish())

    def _sync(self, out: bytes) -> bytes:
        self.usage, self.error, self.done = self._inner.usage, self._inner.error, self._inner.done
        return out

    def _rewrite(self, event: Event) -> bytes:
        data = oa.event_json(event)
        kind, at = data.get("type"), data.get("index")
        index = at if isinstance(at, int) else -1
        if kind == "content_block_start":
            block = oa.obj(data.get("content_block"))
            if block.get("type") == "tool_use" and block.get("name") == self._name:
                self._answers[index] = False
                data = {**data, "content_block": {"type": "text", "text": ""}}
            elif block.get("type") == "tool_use":
                self._called = True
        elif kind == "content_block_delta" and index in self._answers:
            fragment = str(oa.obj(data.get("delta")).get("partial_json") or "")
            self._answers[index] = self._answers[index] or bool(fragment)
            data = {**data, "delta": {"type": "text_delta", "text": fragment}}
        elif kind == "content_block_stop" and self._answers.get(index) is False:
            self._answers[index] = True
            delta = {"type": "content_block_delta", "index": index}
            empty = {**delta, "delta": {"type": "text_delta", "text": "{}"}}
            return encode(orjson.dumps(empty), "content_block_delta") + self._encode(event, data)
        elif kind == "message_delta" and self._answers and not self._called:
            delta = oa.obj(data.get("delta"))
            if delta.get("stop_reason") == "tool_use":
                data = {**data, "delta": {**delta, "stop_reason": "end_turn"}}
        else:  # unchanged; data lines joined by the decoder are split again
            lines = event.data.split(b"\n")
            head = b"" if event.event is None else b"event: " + event.event.encode() + b"\n"
            return head + b"".join(b"data: " + line + b"\n" for line in lines) + b"\n"
        return self._encode(event, data)

    @staticmethod
    def _encode(event: Event, data: dict[str, Any]) -> bytes:
        return encode(orjson.dumps(data), event.event)
