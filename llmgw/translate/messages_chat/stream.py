"""OpenAI ``chat.completion.chunk`` events → Anthropic's stream events, for a
``/v1/messages`` client served through OpenAI's chat format. Pure, no I/O."""

from __future__ import annotations

from typing import Any, cast

import orjson

from llmgw.core import StreamTranslator, Usage
from llmgw.errors import stream_error_event
from llmgw.sse import Event, encode
from llmgw.translate import openai_chat as oa
from llmgw.translate.chat_chunks import ChatChunkReader
from llmgw.translate.messages_chat.answer import STOP_REASONS, message_id
from llmgw.translate.wire import ChatChunk, ChatUsage


def _event(kind: str, **fields: Any) -> bytes:
    return encode(orjson.dumps({"type": kind, **fields}), event=kind)


class MessagesStream(ChatChunkReader):
    """OpenAI ``chat.completion.chunk`` events → Anthropic's stream events.

    ``inner`` translates the provider's own stream to OpenAI's first, when the
    provider is not OpenAI-compatible; usage is then the inner stage's, read from
    the provider's own events.
    """

    def __init__(
        self, model: str, inner: StreamTranslator | None = None, prompt_estimate: int = 0
    ) -> None:
        super().__init__(inner)
        self._estimate = prompt_estimate  # message_start's input_tokens, before the real count
        self._model = model
        self._started = False
        self._block = -1  # index of the open content block, -1 when none is open
        self._block_kind = ""  # "text", or the OpenAI tool call index as "tool:N"
        self._tool_id = ""
        self._stop = "end_turn"
        self._cached = 0

    def _on(self, event: Event) -> bytes:
        if event.data.strip() == b"[DONE]":
            return self._end()
        data = cast(ChatChunk, oa.event_json(event))
        if data.get("error"):
            self.error = str(oa.obj(data["error"]).get("message") or "the provider failed")
            if not self._started:
                return b""
            return stream_error_event(self.error, "anthropic")
        out = [self._start(data)]
        if isinstance(data.get("usage"), dict):
            self._read_usage(data["usage"])
        finish = self._deltas(data, out)
        if finish:
            self._stop = STOP_REASONS.get(str(finish), "end_turn")
        return b"".join(out)

    def _read_usage(self, usage: ChatUsage) -> None:
        if self._inner is None:
            self.usage = Usage(
                oa.count(usage.get("prompt_tokens")), oa.count(usage.get("completion_tokens"))
            )
        self._cached = oa.count(oa.obj(usage.get("prompt_tokens_details")).get("cached_tokens"))

    def _start(self, data: ChatChunk) -> bytes:
        if self._started:
            return b""
        self._started = True
        message: dict[str, Any] = {
            "id": message_id(data.get("id")),
            "type": "message",
            "role": "assistant",
            "model": str(data.get("model") or self._model),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # The real count comes at the end, in message_delta; SDKs that read it only
            # here (the 0.x line) keep the estimate.
            "usage": {"input_tokens": self._estimate, "output_tokens": 0},
        }
        return _event("message_start", message=message)

    def _open(self, kind: str, block: dict[str, Any]) -> bytes:
        closing = self._close()
        self._block += 1
        self._block_kind = kind
        return closing + _event("content_block_start", index=self._block, content_block=block)

    def _close(self) -> bytes:
        if not self._block_kind:
            return b""
        self._block_kind = ""
        return _event("content_block_stop", index=self._block)

    def _text(self, text: str) -> bytes:
        if not text:
            return b""
        opening = (
            b"" if self._block_kind == "text" else self._open("text", {"type": "text", "text": ""})
        )
        delta = {"type": "text_delta", "text": text}
        return opening + _event("content_block_delta", index=self._block, delta=delta)

    def _tool(self, call: dict[str, Any]) -> bytes:
        function = oa.obj(call.get("function"))
        kind = f"tool:{call.get('index', 0)}"
        ident = str(call.get("id") or "")
        opening = b""
        if kind != self._block_kind or (ident and ident != self._tool_id):
            self._tool_id = ident
            block = {
                "type": "tool_use",
                "id": ident or f"toolu_{self._block + 1}",
                "name": str(function.get("name") or ""),
                "input": {},
            }
            opening = self._open(kind, block)
        fragment = function.get("arguments")
        if not isinstance(fragment, str) or not fragment:
            return opening
        delta = {"type": "input_json_delta", "partial_json": fragment}
        return opening + _event("content_block_delta", index=self._block, delta=delta)

    def _end(self) -> bytes:
        if self.done:
            return b""
        self.done = True
        usage: dict[str, int] = {"output_tokens": self.usage.completion_tokens or 0}
        if self.usage.prompt_tokens is not None:
            usage["input_tokens"] = max(0, self.usage.prompt_tokens - self._cached)
        if self._cached:
            usage["cache_read_input_tokens"] = self._cached
        delta = {"stop_reason": self._stop, "stop_sequence": None}
        return b"".join(
            (
                self._start({}),
                self._close(),
                _event("message_delta", delta=delta, usage=usage),
                _event("message_stop"),
            )
        )
