"""Gemini's SSE stream → OpenAI ``chat.completion.chunk`` events. Pure, no I/O."""

from __future__ import annotations

from typing import Any, cast

import orjson

from llmgw.core import Call, Usage
from llmgw.sse import Decoder, Event
from llmgw.translate import openai_chat as oa
from llmgw.translate.chat_gemini.answer import (
    blocked,
    call_id,
    error_parts,
    finish_reason,
    read_usage,
    response_ident,
    visible_parts,
)
from llmgw.translate.wire import GeminiResponse


class ChatStream:
    """Gemini's SSE stream (whole ``GenerateContentResponse`` objects) → chat chunks.

    Function calls arrive whole, so each becomes one tool call delta with all its
    arguments. The stream is done once a candidate carries a ``finishReason`` (or
    the prompt was blocked); the usage chunk and ``[DONE]`` close it at the end.
    """

    def __init__(self, call: Call, model: str) -> None:
        self.usage = Usage()
        self.error: str | None = None
        self.done = False
        self._decoder = Decoder()
        self._out = oa.ChunkWriter(model, oa.wants_usage(call))
        self._tools: dict[int, int] = {}  # choice index → tool calls so far
        self._roles: set[int] = set()
        self._meta: dict[str, Any] = {}
        self._response_id = ""

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._on(event) for event in self._decoder.feed(chunk))

    def finish(self) -> bytes:
        tail = b"".join(self._on(event) for event in self._decoder.flush())
        if not self.done:
            return tail
        usage = oa.usage_dict(
            self.usage,
            cached=oa.count(self._meta.get("cachedContentTokenCount")),
            reasoning=oa.count(self._meta.get("thoughtsTokenCount")),
        )
        return tail + self._out.closing(usage)

    def _on(self, event: Event) -> bytes:
        data = cast(GeminiResponse, oa.event_json(event))
        if data.get("error"):
            self.error = error_parts(event.data, 500)[0]
            return self._out.error(self.error) if self._out.started else b""
        if not self._response_id:
            self._response_id = response_ident(data)
            self._out.ident = f"chatcmpl-{self._response_id}"
            self._out.model = str(data.get("modelVersion") or self._out.model)
        if isinstance(data.get("usageMetadata"), dict):
            self._meta = data["usageMetadata"]
            self.usage = read_usage(self._meta)
        out = [self._candidate(c, n) for n, c in enumerate(oa.items(data.get("candidates")))]
        if (refusal := blocked(data)) and not self.done:
            self.done = True
            refused = self._out.chunk({"role": "assistant", "content": None, "refusal": refusal})
            out.append(refused + self._out.finish("content_filter"))
        return b"".join(out)

    def _candidate(self, candidate: dict[str, Any], position: int) -> bytes:
        index = candidate.get("index", position)
        out = []
        if index not in self._roles:
            self._roles.add(index)
            out.append(self._out.role(index))
        for part in visible_parts(candidate):
            if isinstance(part.get("text"), str):
                out.append(self._out.text(part["text"], index))
            elif call := oa.obj(part.get("functionCall")):
                position = self._tools.get(index, 0)
                self._tools[index] = position + 1
                ident = call_id(call, self._response_id, sum(self._tools.values()) - 1)
                args = orjson.dumps(call.get("args") or {}).decode()
                name = str(call.get("name") or "")
                out.append(self._out.tool_start(position, ident, name, args, index))
        if (finish := finish_reason(candidate, index in self._tools)) is not None:
            self.done = True
            out.append(self._out.finish(finish, index))
        return b"".join(out)
