"""Google's Gemini API: OpenAI chat and embeddings translated to it and back.

``/v1/chat/completions`` → ``models/{model}:generateContent`` (streamed:
``:streamGenerateContent?alt=sse``); ``/v1/embeddings`` →
``models/{model}:batchEmbedContents``. ``/v1/messages`` is served by composing
the Anthropic ⇄ OpenAI translation of the base adapter with this one. The key
goes in ``x-goog-api-key``. Legacy completions are not served.
"""

from __future__ import annotations

import base64
import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

import orjson

from llmgw.config import ProviderConfig
from llmgw.core import (
    Call,
    Endpoint,
    StreamTranslator,
    Unsupported,
    UpstreamRequest,
    Usage,
    estimate_tokens,
)
from llmgw.providers.base import Adapter
from llmgw.sse import Decoder, Event
from llmgw.translate import openai_chat as oa
from llmgw.translate import params
from llmgw.translate.gemini_request import embed_request, generate_request

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"
FINISH_REASONS = MappingProxyType(
    {"STOP": "stop", "MAX_TOKENS": "length"}
    | dict.fromkeys(
        ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"),
        "content_filter",
    )
)


@dataclass(frozen=True)
class GeminiAdapter(Adapter):
    default_base_url: str = DEFAULT_BASE_URL
    endpoints: frozenset[Endpoint] = field(
        default_factory=lambda: frozenset({"chat", "embeddings"})
    )
    ends_with_done: bool = False

    def request(self, call: Call, model: str, provider: ProviderConfig) -> UpstreamRequest:
        if call.endpoint == "messages":
            return super().request(call, model, provider)
        if call.endpoint not in self.endpoints:
            raise Unsupported(f"{self.type} providers do not serve {call.endpoint}")
        name = model.removeprefix("models/")
        dropped: tuple[str, ...] = ()
        if call.endpoint == "chat":
            dropped = params.sort(call.body, "gemini")
        if call.endpoint == "embeddings":
            action, body = "batchEmbedContents", embed_request(call.body, name)
        elif call.stream:
            action, body = "streamGenerateContent?alt=sse", generate_request(call.body)
        else:
            action, body = "generateContent", generate_request(call.body)
        headers = {"Content-Type": "application/json", **provider.headers}
        if provider.api_key:
            headers["x-goog-api-key"] = provider.api_key
        # Quoted: a client's model name must not reach another path or add a query.
        url = f"{provider.base_url or self.default_base_url}/models/{quote(name, safe='')}:{action}"
        return UpstreamRequest("POST", url, headers, orjson.dumps(body), dropped=dropped)

    def passes_through(self, call: Call) -> bool:
        return False

    def response(
        self, call: Call, model: str, body: bytes, parsed: dict[str, Any] | None = None
    ) -> bytes:
        if call.endpoint == "messages":
            return super().response(call, model, body, parsed)
        data = oa.load(body) if parsed is None else parsed
        if call.endpoint == "embeddings":
            return embeddings(call.body, model, data)
        return chat_completion(data, model)

    def error_body(self, call: Call, status: int, body: bytes) -> bytes:
        if call.endpoint == "messages":
            return super().error_body(call, status, body)
        return orjson.dumps(oa.error(*_error(body, status)))

    def stream(self, call: Call, model: str) -> StreamTranslator | None:
        if call.endpoint == "messages":
            return super().stream(call, model)
        return ChatStream(call, model)

    def usage_of(self, parsed: Mapping[str, Any]) -> Usage:
        return read_usage(oa.obj(parsed.get("usageMetadata")))


def read_usage(meta: dict[str, Any]) -> Usage:
    """``usageMetadata`` → usage; thinking tokens are billed as output, so count them."""
    if not meta:
        return Usage()
    output = oa.count(meta.get("candidatesTokenCount")) + oa.count(meta.get("thoughtsTokenCount"))
    return Usage(oa.count(meta.get("promptTokenCount")), output)


def _error(body: bytes, status: int) -> tuple[str, str, str | None]:
    """Gemini's ``{"error": {"code", "message", "status"}}`` → message, type, code."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = {}
    if isinstance(parsed, list) and parsed:  # the JSON-array framing of a stream
        parsed = parsed[0]
    error = oa.obj(oa.obj(parsed).get("error"))
    message = str(error.get("message") or f"the provider answered {status}")
    code = error.get("status")
    return message, oa.error_type(status), code if isinstance(code, str) else None


# Gemini answers → OpenAI answers ----------------------------------------------------


def _response_id(data: dict[str, Any]) -> str:
    return str(data.get("responseId") or uuid.uuid4().hex[:24])


def _call_id(call: dict[str, Any], response_id: str, position: int) -> str:
    """Gemini's own call id when it sends one, else one made from the response's id."""
    return str(call.get("id") or f"call_{response_id}_{position}")


def _finish(candidate: dict[str, Any], called: bool) -> str | None:
    reason = candidate.get("finishReason")
    if not isinstance(reason, str):
        return None
    finish = FINISH_REASONS.get(reason, "stop")
    return "tool_calls" if called and finish == "stop" else finish


def _blocked(data: dict[str, Any]) -> str | None:
    """Why the prompt itself was refused (``promptFeedback.blockReason``), if it was."""
    reason = oa.obj(data.get("promptFeedback")).get("blockReason")
    return f"the prompt was blocked by the provider ({reason})" if reason else None


def _parts(candidate: dict[str, Any]) -> list[dict[str, Any]]:
    """The answer's parts, without thought summaries."""
    return [
        p for p in oa.items(oa.obj(candidate.get("content")).get("parts")) if not p.get("thought")
    ]


def chat_completion(data: dict[str, Any], model: str) -> bytes:
    response_id = _response_id(data)
    choices = []
    for position, candidate in enumerate(oa.items(data.get("candidates"))):
        parts = _parts(candidate)
        text = "".join(str(p["text"]) for p in parts if isinstance(p.get("text"), str))
        found = [c for c in (oa.obj(p.get("functionCall")) for p in parts) if c]
        calls = [
            oa.tool_call(_call_id(c, response_id, n), str(c.get("name") or ""), c.get("args"))
            for n, c in enumerate(found)
        ]
        finish = _finish(candidate, bool(calls)) or "stop"
        index = candidate.get("index", position)
        choices.append(oa.choice(index, text if text or not calls else None, calls, finish))
    if not choices and (refusal := _blocked(data)):
        choices.append(oa.choice(0, None, [], "content_filter", refusal=refusal))
    meta = oa.obj(data.get("usageMetadata"))
    usage = oa.usage_dict(
        read_usage(meta),
        cached=oa.count(meta.get("cachedContentTokenCount")),
        reasoning=oa.count(meta.get("thoughtsTokenCount")),
    )
    return oa.completion(
        f"chatcmpl-{response_id}", str(data.get("modelVersion") or model), choices, usage
    )


def embeddings(request: dict[str, Any], model: str, data: dict[str, Any]) -> bytes:
    as_base64 = request.get("encoding_format") == "base64"
    out = []
    for index, item in enumerate(oa.items(data.get("embeddings"))):
        values = [float(v) for v in item.get("values") or []]
        vector: object = (
            base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
            if as_base64
            else values
        )
        out.append({"object": "embedding", "index": index, "embedding": vector})
    raw = request.get("input")
    tokens = sum(estimate_tokens(t) for t in ([raw] if isinstance(raw, str) else raw or []))
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}  # Gemini does not count them
    return orjson.dumps({"object": "list", "data": out, "model": model, "usage": usage})


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
        data = oa.event_json(event)
        if data.get("error"):
            self.error = _error(event.data, 500)[0]
            return self._out.error(self.error) if self._out.started else b""
        if not self._response_id:
            self._response_id = _response_id(data)
            self._out.ident = f"chatcmpl-{self._response_id}"
            self._out.model = str(data.get("modelVersion") or self._out.model)
        if isinstance(data.get("usageMetadata"), dict):
            self._meta = data["usageMetadata"]
            self.usage = read_usage(self._meta)
        out = [self._candidate(c, n) for n, c in enumerate(oa.items(data.get("candidates")))]
        if (refusal := _blocked(data)) and not self.done:
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
        for part in _parts(candidate):
            if isinstance(part.get("text"), str):
                out.append(self._out.text(part["text"], index))
            elif call := oa.obj(part.get("functionCall")):
                position = self._tools.get(index, 0)
                self._tools[index] = position + 1
                ident = _call_id(call, self._response_id, sum(self._tools.values()) - 1)
                args = orjson.dumps(call.get("args") or {}).decode()
                name = str(call.get("name") or "")
                out.append(self._out.tool_start(position, ident, name, args, index))
        if (finish := _finish(candidate, index in self._tools)) is not None:
            self.done = True
            out.append(self._out.finish(finish, index))
        return b"".join(out)
