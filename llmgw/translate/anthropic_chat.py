"""A ``/v1/messages`` client served by a provider that speaks OpenAI's chat format.

The base ``Adapter`` composes these for the ``messages`` endpoint: the Anthropic
request becomes an OpenAI chat request (``chat_call``), and what comes back (JSON,
SSE or an error) is rewritten as Anthropic's message, event sequence or error.
A provider that itself translates OpenAI chat (Gemini) plugs in its own chat
translator as the ``inner`` stage of ``MessagesStream``.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import orjson

from llmgw.core import Call, StreamTranslator, Usage
from llmgw.sse import Decoder, Event, encode
from llmgw.translate import openai_chat as oa

STOP_REASONS = MappingProxyType(
    {
        "stop": "end_turn",
        "length": "max_tokens",
        "tool_calls": "tool_use",
        "function_call": "tool_use",
        "content_filter": "refusal",
    }
)
_TOOL_CHOICES = MappingProxyType({"auto": "auto", "any": "required", "none": "none"})
_STATUS_TYPES = MappingProxyType(
    {413: "request_too_large", 503: "overloaded_error", 529: "overloaded_error"}
)
_ERROR_TYPES = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "api_error",
        "overloaded_error",
    }
)


# Anthropic request → OpenAI chat request --------------------------------------------


def chat_call(call: Call) -> Call:
    """The OpenAI chat call that asks what the ``messages`` call asks."""
    body = chat_request(call.body)
    return Call("chat", call.model, call.stream, body, orjson.dumps(body), call.headers)


def chat_request(body: dict[str, Any]) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    system = _text(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for message in oa.items(body.get("messages")):
        messages.extend(_chat_messages(message))
    out: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    if isinstance(body.get("max_tokens"), int):
        out["max_tokens"] = body["max_tokens"]
    if isinstance(body.get("stop_sequences"), list):
        out["stop"] = body["stop_sequences"]
    for name in ("temperature", "top_p"):
        if isinstance(body.get(name), int | float):
            out[name] = body[name]
    tools = [t for t in oa.items(body.get("tools")) if t.get("type", "custom") == "custom"]
    if tools:
        out["tools"] = [_function(tool) for tool in tools]
    out.update(_tool_choice(oa.obj(body.get("tool_choice"))))
    out.update(_reasoning(oa.obj(body.get("thinking"))))
    user = oa.obj(body.get("metadata")).get("user_id")
    if isinstance(user, str):
        out["user"] = user
    if body.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}  # Anthropic's stream always has usage
    return out


def _text(content: object) -> str:
    """Text of a string or of a list of blocks (Anthropic's ``text`` blocks), joined."""
    if isinstance(content, str):
        return content
    return "\n\n".join(str(b.get("text") or "") for b in oa.items(content) if b.get("text"))


def _chat_messages(message: dict[str, Any]) -> list[dict[str, Any]]:
    role = message.get("role")
    blocks = oa.parts_of(message.get("content"))
    if role == "assistant":
        return [_assistant(blocks)]
    out: list[dict[str, Any]] = [
        {
            "role": "tool",
            "tool_call_id": str(block.get("tool_use_id") or ""),
            "content": _text(block.get("content")),
        }
        for block in blocks
        if block.get("type") == "tool_result"
    ]
    parts = [p for p in (_part(b) for b in blocks if b.get("type") != "tool_result") if p]
    if parts and all(p["type"] == "text" for p in parts):
        out.append({"role": "user", "content": "".join(p["text"] for p in parts)})
    elif parts:
        out.append({"role": "user", "content": parts})
    return out


def _part(block: dict[str, Any]) -> dict[str, Any] | None:
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": str(block.get("text") or "")}
    source = oa.obj(block.get("source"))
    if source.get("type") == "url":
        url = str(source.get("url") or "")
    elif source.get("type") == "base64":
        url = oa.data_url(str(source.get("media_type")), str(source.get("data") or ""))
    else:
        return None
    if kind == "image":
        return {"type": "image_url", "image_url": {"url": url}}
    if kind == "document" and source.get("type") == "base64":
        return {"type": "file", "file": {"filename": "document.pdf", "file_data": url}}
    return None


def _assistant(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    text = "".join(str(b.get("text") or "") for b in blocks if b.get("type") == "text")
    calls = [
        oa.tool_call(str(b.get("id")), str(b.get("name")), b.get("input"))
        for b in blocks
        if b.get("type") == "tool_use"
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _function(tool: dict[str, Any]) -> dict[str, Any]:
    function = {"name": tool.get("name"), "parameters": tool.get("input_schema") or {}}
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _tool_choice(choice: dict[str, Any]) -> dict[str, Any]:
    kind = choice.get("type")
    out: dict[str, Any] = {}
    if kind == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif isinstance(kind, str) and kind in _TOOL_CHOICES:
        out["tool_choice"] = _TOOL_CHOICES[kind]
    if choice.get("disable_parallel_tool_use") is True:
        out["parallel_tool_calls"] = False
    return out


def _reasoning(thinking: dict[str, Any]) -> dict[str, Any]:
    """Extended thinking with a budget as OpenAI's ``reasoning_effort``: up to 2048 tokens
    low, up to 8192 medium, more high. Other settings (disabled, adaptive) are dropped:
    the provider's default applies."""
    budget = oa.count(thinking.get("budget_tokens"))
    if thinking.get("type") != "enabled" or budget <= 0:
        return {}
    effort = "low" if budget <= 2048 else "medium" if budget <= 8192 else "high"
    return {"reasoning_effort": effort}


# OpenAI answers → Anthropic answers ------------------------------------------------


def content_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
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


def message(body: bytes, model: str) -> bytes:
    """An OpenAI ``chat.completion`` as Anthropic's ``message`` object."""
    data = oa.load(body)
    first = oa.items(data.get("choices"))[:1]
    reply = oa.obj(first[0].get("message")) if first else {}
    content = content_blocks(reply)
    finish = first[0].get("finish_reason") if first else None
    return orjson.dumps(
        {
            "id": message_id(data.get("id")),
            "type": "message",
            "role": "assistant",
            "model": str(data.get("model") or model),
            "content": content,
            "stop_reason": STOP_REASONS.get(str(finish), "end_turn"),
            "stop_sequence": None,
            "usage": _usage(oa.obj(data.get("usage"))),
        }
    )


def message_id(ident: object) -> str:
    """An Anthropic message id (``msg_…``), made from the OpenAI answer's own."""
    text = str(ident or "")
    return text if text.startswith("msg_") else "msg_" + (text.removeprefix("chatcmpl-") or "llmgw")


def _usage(usage: dict[str, Any]) -> dict[str, int]:
    """OpenAI's usage in Anthropic's terms (its ``input_tokens`` exclude cache reads)."""
    cached = oa.count(oa.obj(usage.get("prompt_tokens_details")).get("cached_tokens"))
    out = {
        "input_tokens": max(0, oa.count(usage.get("prompt_tokens")) - cached),
        "output_tokens": oa.count(usage.get("completion_tokens")),
    }
    if cached:
        out["cache_read_input_tokens"] = cached
    return out


def error(status: int, body: bytes) -> bytes:
    """An OpenAI error body as Anthropic's error shape."""
    detail = oa.obj(oa.load(body).get("error"))
    kind = str(detail.get("type") or "")
    if kind not in _ERROR_TYPES:
        kind = _STATUS_TYPES.get(status) or oa.error_type(status)
    message = str(detail.get("message") or f"the provider answered {status}")
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


def _event(kind: str, **fields: Any) -> bytes:
    return encode(orjson.dumps({"type": kind, **fields}), event=kind)


class MessagesStream:
    """OpenAI ``chat.completion.chunk`` events → Anthropic's stream events.

    ``inner`` translates the provider's own stream to OpenAI's first, when the
    provider is not OpenAI-compatible; usage is then the inner stage's, read from
    the provider's own events.
    """

    def __init__(
        self, model: str, inner: StreamTranslator | None = None, prompt_estimate: int = 0
    ) -> None:
        self.usage = Usage()
        self._estimate = prompt_estimate  # message_start's input_tokens, before the real count
        self.error: str | None = None
        self.done = False
        self._inner = inner
        self._model = model
        self._decoder = Decoder()
        self._started = False
        self._block = -1  # index of the open content block, -1 when none is open
        self._block_kind = ""  # "text", or the OpenAI tool call index as "tool:N"
        self._tool_id = ""
        self._stop = "end_turn"
        self._cached = 0

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

    def _on(self, event: Event) -> bytes:
        if event.data.strip() == b"[DONE]":
            return self._end()
        data = oa.event_json(event)
        if data.get("error"):
            self.error = str(oa.obj(data["error"]).get("message") or "the provider failed")
            if not self._started:
                return b""
            body = {"type": "api_error", "message": self.error}
            return _event("error", error=body)
        out = [self._start(data)]
        if isinstance(data.get("usage"), dict):
            self._read_usage(data["usage"])
        for choice in oa.items(data.get("choices")):
            if choice.get("index", 0) != 0:
                continue
            delta = oa.obj(choice.get("delta"))
            out.append(self._text(oa.text_of(delta.get("content"))))
            out.extend(self._tool(call) for call in oa.items(delta.get("tool_calls")))
            if choice.get("finish_reason"):
                self._stop = STOP_REASONS.get(str(choice["finish_reason"]), "end_turn")
        return b"".join(out)

    def _read_usage(self, usage: dict[str, Any]) -> None:
        if self._inner is None:
            self.usage = Usage(
                oa.count(usage.get("prompt_tokens")), oa.count(usage.get("completion_tokens"))
            )
        self._cached = oa.count(oa.obj(usage.get("prompt_tokens_details")).get("cached_tokens"))

    def _start(self, data: dict[str, Any]) -> bytes:
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
