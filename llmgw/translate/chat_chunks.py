"""The reading side shared by translators whose input is OpenAI's chat chunk stream
(``messages_chat``, ``responses_chat``): the stream arrives either as the provider's
own bytes or through an ``inner`` translator that turns a non-OpenAI provider's
stream into chat chunks first; either way it is cut into SSE events and each event
goes to the subclass's ``_on``. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmgw.core import StreamTranslator, Usage
from llmgw.sse import Decoder, Event
from llmgw.translate import openai_chat as oa


class ChatChunkReader:
    """``feed``/``finish`` of a ``StreamTranslator`` over chat chunk events; usage and
    errors are the inner stage's, when there is one (it read the provider's events)."""

    def __init__(self, inner: StreamTranslator | None) -> None:
        self.usage = Usage()
        self.error: str | None = None
        self.done = False
        self._inner = inner
        self._decoder = Decoder()

    def feed(self, chunk: bytes) -> bytes:
        data = self._inner.feed(chunk) if self._inner is not None else chunk
        return self._translate(data)

    def finish(self) -> bytes:
        if self._inner is None:
            return self._translate(b"", flush=True)
        return self._translate(self._inner.finish(), flush=True)

    def _translate(self, data: bytes, flush: bool = False) -> bytes:
        if self._inner is not None:  # it has read the provider's events already
            self.usage = self._inner.usage
            self.error = self._inner.error or self.error
        events = self._decoder.feed(data) if data else []
        if flush:
            events += self._decoder.flush()
        return b"".join(self._on(event) for event in events)

    def _deltas(self, data: Mapping[str, object], out: list[bytes]) -> object:
        """The first choice's text and tool call pieces of a chunk, translated onto
        ``out``; its finish reason (None while it runs)."""
        finish: object = None
        for choice in oa.items(data.get("choices")):
            if choice.get("index", 0) != 0:
                continue
            delta = oa.obj(choice.get("delta"))
            out.append(self._text(oa.text_of(delta.get("content"))))
            out.extend(self._tool(call) for call in oa.items(delta.get("tool_calls")))
            finish = choice.get("finish_reason") or finish
        return finish

    def _on(self, event: Event) -> bytes:
        raise NotImplementedError

    def _text(self, text: str) -> bytes:
        raise NotImplementedError

    def _tool(self, call: dict[str, Any]) -> bytes:
        raise NotImplementedError
