"""Anthropic Messages format helpers shared by the translators on either side of it,
and by the Anthropic provider's own pass-through.

Token usage as Anthropic counts it, the text of an error event, an OpenAI assistant
message as Anthropic content blocks, and ``MessagesRelay``: a ``/v1/messages`` stream
relayed unchanged while its events are read on the side. Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from llmgw.core import Usage
from llmgw.sse import Decoder, Event
from llmgw.translate import openai_chat as oa
from llmgw.translate.wire import AnthropicEvent, AnthropicUsage, ChatMessage


def read_usage(usage: AnthropicUsage | Mapping[str, Any], known: Usage) -> Usage:
    """Anthropic's usage (cumulative; fields may be absent) over what is already known.

    The prompt counts every input token: plain, cache writes and cache reads.
    """
    prompt = known.prompt_tokens
    if isinstance(usage.get("input_tokens"), int):
        prompt = sum(
            oa.count(usage.get(k))
            for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
    output = usage.get("output_tokens")
    return Usage(prompt, output if isinstance(output, int) else known.completion_tokens)


def error_message(data: AnthropicEvent | Mapping[str, Any]) -> str:
    """The text of an ``error`` event or body: its type and message."""
    error = oa.obj(data.get("error"))
    return f"{error.get('type') or 'error'}: {error.get('message') or 'the provider failed'}"


def content_blocks(message: ChatMessage | Mapping[str, Any]) -> list[dict[str, Any]]:
    """An OpenAI assistant message's text and tool calls as Anthropic content blocks."""
    text = oa.text_of(message.get("content"))
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    for call in oa.items(message.get("tool_calls")):
        function = oa.obj(call.get("function"))
        blocks.append(
            {
                "type": "tool_use",
                "id": str(call.get("id") or ""),
                "name": str(function.get("name") or ""),
                "input": oa.arguments(function.get("arguments")),
            }
        )
    return blocks


class MessagesRelay:
    """``/v1/messages`` streamed from Anthropic: bytes unchanged, events read on the side.

    The first event is held back until it is complete so that a stream opening with
    an ``error`` event can still fall back; from then on each chunk is returned as it
    came. Tokens are read from ``message_start`` (input) and ``message_delta``
    (cumulative output); ``message_stop`` marks a stream that ended properly.
    """

    def __init__(self) -> None:
        self.usage = Usage()
        self.error: str | None = None
        self.done = False
        self._decoder = Decoder()
        self._held = bytearray()
        self._first: str | None = None  # the type of the first event that is not a ping

    def feed(self, chunk: bytes) -> bytes:
        committed = self._first is not None
        for event in self._decoder.feed(chunk):
            self._read(event)
        if committed:
            return chunk
        self._held += chunk
        return b"" if self._first in (None, "error") else self._release()

    def finish(self) -> bytes:
        for event in self._decoder.flush():
            self._read(event)
        return b"" if self._first == "error" else self._release()

    def _release(self) -> bytes:
        held, self._held = bytes(self._held), bytearray()
        return held

    def _read(self, event: Event) -> None:
        data = cast(AnthropicEvent, oa.event_json(event))
        kind = str(data.get("type") or event.event)
        if kind == "error":
            self.error = error_message(data)
        elif kind == "message_start":
            message = oa.obj(data.get("message"))
            self.usage = read_usage(oa.obj(message.get("usage")), self.usage)
        elif kind == "message_delta":
            self.usage = read_usage(oa.obj(data.get("usage")), self.usage)
        elif kind == "message_stop":
            self.done = True
        if self._first is None and kind != "ping":
            self._first = kind
