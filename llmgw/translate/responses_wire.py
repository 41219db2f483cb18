"""The Responses API's own stream, relayed unchanged from a provider that speaks it
(``ResponsesRelay``): its events read on the side for usage, its end and its errors.
Pure, no I/O."""

from __future__ import annotations

from llmgw.core import Usage
from llmgw.sse import Decoder, Event
from llmgw.translate import openai_chat as oa

# The events that end a Responses stream.
ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def responses_usage(usage: dict[str, object], known: Usage) -> Usage:
    """A Responses ``usage`` (``input_tokens``/``output_tokens``) over what is known."""
    prompt, completion = usage.get("input_tokens"), usage.get("output_tokens")
    return Usage(
        prompt if isinstance(prompt, int) else known.prompt_tokens,
        completion if isinstance(completion, int) else known.completion_tokens,
    )


class ResponsesRelay:
    """``/v1/responses`` streamed from a provider that speaks it: bytes unchanged.

    The first event is held back until complete so that a stream opening with an
    ``error`` (or ``response.failed``) can still fall back; the usage is read from the
    end event, which also marks a stream that ended properly.
    """

    def __init__(self) -> None:
        self.usage = Usage()
        self.error: str | None = None
        self.done = False
        self._decoder = Decoder()
        self._held = bytearray()
        self._first: str | None = None

    def feed(self, chunk: bytes) -> bytes:
        committed = self._first is not None and self._first not in ("error", "response.failed")
        for event in self._decoder.feed(chunk):
            self._read(event)
        if committed:
            return chunk
        self._held += chunk
        return b"" if self._first in (None, "error", "response.failed") else self._release()

    def finish(self) -> bytes:
        for event in self._decoder.flush():
            self._read(event)
        return b"" if self._first in ("error", "response.failed") else self._release()

    def _release(self) -> bytes:
        held, self._held = bytes(self._held), bytearray()
        return held

    def _read(self, event: Event) -> None:
        data = oa.event_json(event)
        kind = str(data.get("type") or event.event)
        response = oa.obj(data.get("response"))
        if kind == "error" or kind == "response.failed":
            error = oa.obj(data.get("error") or response.get("error"))
            self.error = str(error.get("message") or data.get("message") or "the provider failed")
        if kind in ENDS:
            self.usage = responses_usage(oa.obj(response.get("usage")), self.usage)
            self.done = kind != "response.failed"
        if self._first is None:
            self._first = kind
