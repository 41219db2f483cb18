"""Anthropic Messages answers → OpenAI chat answers: the whole ``message`` as a
``chat.completion``, and the stream's events as ``chat.completion.chunk`` events, as
they arrive. Thinking comes back as ``reasoning_content``."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, cast

from llmgw.core import Call, Usage
from llmgw.sse import Decoder, Event
from llmgw.translate import openai_chat as oa
from llmgw.translate.anthropic_messages import error_message, read_usage
from llmgw.translate.wire import AnthropicBlock, AnthropicEvent, AnthropicMessage

FINISH_REASONS = MappingProxyType(
    {
        "end_turn": "stop",
        "stop_sequence": "stop",
        "pause_turn": "stop",
        "max_tokens": "length",
        "model_context_window_exceeded": "length",
        "tool_use": "tool_calls",
        "refusal": "content_filter",
    }
)


def chat_completion(message: AnthropicMessage | dict[str, Any], model: str) -> bytes:
    """An Anthropic ``message`` as an OpenAI ``chat.completion``."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    blocks = cast(list[AnthropicBlock], oa.items(message.get("content")))
    for block in blocks:
        if block.get("type") == "text":
            texts.append(str(block.get("text") or ""))
        elif block.get("type") == "tool_use":
            calls.append(
                oa.tool_call(str(block.get("id")), str(block.get("name")), block.get("input"))
            )
    reason = FINISH_REASONS.get(str(message.get("stop_reason")), "stop")
    raw_usage = oa.obj(message.get("usage"))
    usage = oa.usage_dict(
        read_usage(raw_usage, Usage()), cached=oa.count(raw_usage.get("cache_read_input_tokens"))
    )
    choice = oa.choice(0, "".join(texts) if texts or not calls else None, calls, reason)
    if reasoning := _thinking(blocks):
        choice["message"]["reasoning_content"] = reasoning
    ident = str(message.get("id") or "msg")
    return oa.completion(ident, str(message.get("model") or model), [choice], usage)


def _thinking(blocks: list[AnthropicBlock]) -> str:
    """The text of the ``thinking`` blocks (their signatures and redacted blocks left out),
    for OpenAI clients as ``reasoning_content`` (DeepSeek's, vLLM's and OpenRouter's name)."""
    return "".join(str(b.get("thinking") or "") for b in blocks if b.get("type") == "thinking")


class ChatStream:
    """Anthropic's stream events → ``chat.completion.chunk`` events, as they arrive."""

    def __init__(self, call: Call, model: str) -> None:
        self.usage = Usage()
        self.error: str | None = None
        self.done = False
        self._decoder = Decoder()
        self._out = oa.ChunkWriter(model, oa.wants_usage(call))
        self._tools: dict[int, int] = {}  # content block index → OpenAI tool call index
        self._with_args: set[int] = set()  # content block indexes of calls with arguments
        self._cached = 0

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._on(event) for event in self._decoder.feed(chunk))

    def finish(self) -> bytes:
        return b"".join(self._on(event) for event in self._decoder.flush())

    def _on(self, event: Event) -> bytes:
        data = cast(AnthropicEvent, oa.event_json(event))
        match data.get("type") or event.event:
            case "message_start":
                message = oa.obj(data.get("message"))
                self._out.ident = str(message.get("id") or self._out.ident)
                self._track(oa.obj(message.get("usage")))
                return self._out.role()
            case "content_block_start":
                return self._block(data.get("index"), oa.obj(data.get("content_block")))
            case "content_block_delta":
                return self._delta(data.get("index"), oa.obj(data.get("delta")))
            case "content_block_stop":
                return self._stop(data.get("index"))
            case "message_delta":
                self._track(oa.obj(data.get("usage")))
                reason = oa.obj(data.get("delta")).get("stop_reason")
                return self._out.finish(FINISH_REASONS.get(str(reason), "stop"))
            case "message_stop":
                self.done = True
                return self._out.closing(oa.usage_dict(self.usage, cached=self._cached))
            case "error":
                self.error = error_message(data)
                return self._out.error(self.error) if self._out.started else b""
        return b""  # ping, and event types added later

    def _track(self, usage: dict[str, Any]) -> None:
        self.usage = read_usage(usage, self.usage)
        self._cached = oa.count(usage.get("cache_read_input_tokens")) or self._cached

    def _block(self, index: object, block: dict[str, Any]) -> bytes:
        if block.get("type") == "text":
            return self._out.text(str(block.get("text") or ""))
        if block.get("type") == "thinking":
            return self._out.reasoning(str(block.get("thinking") or ""))
        if block.get("type") != "tool_use" or not isinstance(index, int):
            return b""
        position = self._tools[index] = len(self._tools)
        return self._out.tool_start(position, str(block.get("id")), str(block.get("name")))

    def _delta(self, index: object, delta: dict[str, Any]) -> bytes:
        if delta.get("type") == "text_delta":
            return self._out.text(str(delta.get("text") or ""))
        if delta.get("type") == "input_json_delta" and index in self._tools:
            assert isinstance(index, int)
            fragment = str(delta.get("partial_json") or "")
            if fragment:
                self._with_args.add(index)
            return self._out.tool_args(self._tools[index], fragment)
        if delta.get("type") == "thinking_delta":
            return self._out.reasoning(str(delta.get("thinking") or ""))
        return b""  # signatures and citations have no OpenAI counterpart

    def _stop(self, index: object) -> bytes:
        """The end of a block: a tool call that got no arguments gets ``{}``, as OpenAI's
        do, so that what the client assembles is always JSON."""
        if not isinstance(index, int) or index not in self._tools or index in self._with_args:
            return b""
        self._with_args.add(index)
        return self._out.tool_args(self._tools[index], "{}")
