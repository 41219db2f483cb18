"""OpenAI chat answers → the simple prompt APIs' shapes (SPEC §9). Pure, no I/O.

``/api/chat`` and ``/gateway/query`` answer ``{"response": "<text>", ...}`` for a chat
completion; ``/api/chat/stream`` sends ``data: {"delta": "<text>"}`` per piece of text,
then ``event: done`` with what the request was (id, model, provider, cached, usage),
or ``event: error`` with ``{"error": {...}}`` when the stream failed after its first
byte. The provider's answer arrives here already in OpenAI's format (translated or
not), from the network, a coalesced leader or the cache.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import orjson

from llmgw import sse
from llmgw.core import content_text

Shape = Literal["chat", "query"]
USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


def usage_of(value: object) -> dict[str, int] | None:
    """The three token counts of an OpenAI ``usage`` object, or None."""
    if not isinstance(value, dict):
        return None
    counts = {name: value.get(name) for name in USAGE_FIELDS}
    if not all(isinstance(n, int) for n in counts.values()):
        return None
    return counts  # type: ignore[return-value]


def text_of(message: object) -> str:
    """A message's (or delta's) text: a string content, or its text parts joined."""
    if not isinstance(message, dict):
        return ""
    return content_text(message.get("content"), "")


def simple_answer(body: bytes, shape: Shape, meta: dict[str, Any]) -> bytes:
    """A chat completion's JSON → the simple answer. ``meta``: provider, cached,
    latency_ms and usage as the gateway knows them (used when the body lacks usage)."""
    try:
        completion = orjson.loads(body)
    except orjson.JSONDecodeError:
        completion = None
    if not isinstance(completion, dict):
        completion = {}
    choices = completion.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else {}
    text = text_of(first.get("message") if isinstance(first, dict) else None)
    model = completion.get("model")
    if shape == "query":
        answer: dict[str, Any] = {
            "cached": meta["cached"],
            "response": text,
            "provider": meta["provider"],
            "model": model,
        }
        return orjson.dumps(answer)
    return orjson.dumps(
        {
            "id": completion.get("id"),
            "response": text,
            "model": model,
            "provider": meta["provider"],
            "cached": meta["cached"],
            "usage": usage_of(completion.get("usage")) or meta.get("usage"),
            "latency_ms": meta["latency_ms"],
        }
    )


def error_event(error: object) -> bytes:
    """``event: error`` with ``{"error": {...}}``."""
    if not isinstance(error, dict):
        error = {"message": str(error), "type": "api_error", "param": None, "code": None}
    return sse.encode(orjson.dumps({"error": error}), event="error")


class SimpleStream:
    """One streamed answer: OpenAI chat chunks in, simple events out.

    ``meta`` is asked at the end for what the gateway knows of the request (provider,
    cached, usage when the provider sent none).
    """

    __slots__ = ("_decoder", "_id", "_meta", "_model", "_usage", "ended")

    def __init__(self, meta: Callable[[], dict[str, Any]]) -> None:
        self._decoder = sse.Decoder()
        self._meta = meta
        self._id: str | None = None
        self._model: str | None = None
        self._usage: dict[str, int] | None = None
        self.ended = False  # its done or error event was written

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._event(event) for event in self._decoder.feed(chunk))

    def finish(self) -> bytes:
        """At the end of the stream: what is left, then an error if it never ended."""
        out = b"".join(self._event(event) for event in self._decoder.flush())
        if not self.ended:
            self.ended = True
            out += error_event(
                {
                    "message": "the stream ended before its answer was complete",
                    "type": "api_error",
                    "param": None,
                    "code": "upstream_error",
                }
            )
        return out

    def _event(self, event: sse.Event) -> bytes:
        if self.ended:
            return b""
        if event.data.strip() == b"[DONE]":
            self.ended = True
            meta = self._meta()
            done = {
                "id": self._id,
                "model": self._model,
                "provider": meta["provider"],
                "cached": meta["cached"],
                "usage": self._usage or meta.get("usage"),
            }
            return sse.encode(orjson.dumps(done), event="done")
        try:
            chunk = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return b""
        if not isinstance(chunk, dict):
            return b""
        if "error" in chunk or event.event == "error":
            self.ended = True
            return error_event(chunk.get("error", chunk))
        if isinstance(chunk.get("id"), str):
            self._id = chunk["id"]
        if isinstance(chunk.get("model"), str):
            self._model = chunk["model"]
        usage = usage_of(chunk.get("usage"))
        if usage is not None:
            self._usage = usage
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return b""
        text = text_of(choices[0].get("delta"))
        return sse.encode(orjson.dumps({"delta": text})) if text else b""
