"""Anthropic's Messages API: OpenAI chat translated to it, ``/v1/messages`` relayed.

``/v1/chat/completions`` → ``POST {base}/v1/messages``: system and developer
messages become ``system``, tool calls become ``tool_use`` blocks, tool results
``tool_result`` blocks in a user turn, consecutive turns of one role are merged,
and the answer (JSON or SSE, chunk by chunk) comes back as OpenAI's. A
``/v1/messages`` call is forwarded unchanged but for the model name, and its
answer relayed byte for byte; its stream is still read to count tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson

from llmgw.config import AnthropicProvider, ProviderConfig
from llmgw.core import Call, Endpoint, StreamTranslator, Unsupported, UpstreamRequest, Usage
from llmgw.providers.base import Adapter
from llmgw.sse import Decoder, Event
from llmgw.translate import anthropic_options as options
from llmgw.translate import openai_chat as oa
from llmgw.translate import params
from llmgw.translate.anthropic_chat import content_blocks
from llmgw.translate.anthropic_prompt_cache import cache_mark, mark_tools, system_blocks

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; OpenAI clients may omit it
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
_TOOL_CHOICES = MappingProxyType({"auto": "auto", "none": "none", "required": "any"})


@dataclass(frozen=True)
class AnthropicAdapter(Adapter):
    default_base_url: str = DEFAULT_BASE_URL
    endpoints: frozenset[Endpoint] = field(default_factory=lambda: frozenset({"chat", "messages"}))
    ends_with_done: bool = False

    def request(self, call: Call, model: str, provider: ProviderConfig) -> UpstreamRequest:
        if call.endpoint not in self.endpoints:
            raise Unsupported(f"{self.type} providers do not serve {call.endpoint}")
        dropped: tuple[str, ...] = ()
        if call.endpoint == "messages":
            body = call.body_for(model)
        else:
            default_max = DEFAULT_MAX_TOKENS
            if isinstance(provider, AnthropicProvider):
                default_max = provider.default_max_tokens
            dropped = params.sort(call.body, "anthropic")
            out = messages_request(call.body, model, default_max)
            dropped += options.apply(call.body, out)
            body = orjson.dumps(out)
        base = (provider.base_url or self.default_base_url).removesuffix("/v1")
        headers = _headers(call, provider)
        return UpstreamRequest("POST", base + "/v1/messages", headers, body, dropped=dropped)

    def passes_through(self, call: Call) -> bool:
        return call.endpoint == "messages"

    def failure_status(self, status: int) -> int:
        return 503 if status == 529 else status  # 529 overloaded: a 503 by another name

    def response(
        self, call: Call, model: str, body: bytes, parsed: dict[str, Any] | None = None
    ) -> bytes:
        if call.endpoint == "messages":
            return body
        message = oa.load(body) if parsed is None else parsed
        return chat_completion(options.answer_message(call.body, message), model)

    def error_body(self, call: Call, status: int, body: bytes) -> bytes:
        if call.endpoint == "messages":
            return body
        error = oa.obj(oa.load(body).get("error"))
        message = str(error.get("message") or f"the provider answered {status}")
        return orjson.dumps(oa.error(message, str(error.get("type") or oa.error_type(status))))

    def stream(self, call: Call, model: str) -> StreamTranslator | None:
        if call.endpoint == "messages":
            return MessagesRelay()
        return options.answer_stream(call.body, ChatStream(call, model))

    def usage_of(self, parsed: Mapping[str, Any]) -> Usage:
        return read_usage(oa.obj(parsed.get("usage")), Usage())


def _headers(call: Call, provider: ProviderConfig) -> dict[str, str]:
    version = provider.anthropic_version if isinstance(provider, AnthropicProvider) else None
    sent = {name.lower(): value for name, value in call.headers.items()}
    headers = {
        "content-type": "application/json",
        "anthropic-version": sent.get("anthropic-version") or version or DEFAULT_VERSION,
        **provider.headers,
    }
    if "anthropic-beta" in sent:
        headers["anthropic-beta"] = sent["anthropic-beta"]
    if provider.api_key:
        headers["x-api-key"] = provider.api_key
    return headers


def read_usage(usage: dict[str, Any], known: Usage) -> Usage:
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


# OpenAI chat request → Anthropic Messages request ----------------------------------


def messages_request(body: dict[str, Any], model: str, default_max: int) -> dict[str, Any]:
    """The Messages request for ``body``; its structured output and thinking are added
    by ``anthropic_options.apply`` and its parameters sorted by ``params.sort``."""
    system, turns = _turns(oa.items(body.get("messages")))
    limit = oa.max_tokens(body)
    out: dict[str, Any] = {"model": model, "messages": turns, "max_tokens": limit or default_max}
    if system:
        out["system"] = system
    if stop := oa.stop_list(body):
        out["stop_sequences"] = stop
    for name in ("temperature", "top_p"):
        if isinstance(body.get(name), int | float):
            out[name] = body[name]
    if tools := oa.function_tools(body):
        out["tools"] = [_tool(function) for function in tools]
        mark_tools(out["tools"], body)
        if choice := _tool_choice(body):
            out["tool_choice"] = choice
    user = body.get("safety_identifier") or body.get("user")
    if isinstance(user, str):
        out["metadata"] = {"user_id": user}
    if body.get("stream") is True:
        out["stream"] = True
    return out


def _turns(
    messages: list[dict[str, Any]],
) -> tuple[str | list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for at, message in enumerate(messages):
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(system_blocks(message.get("content")))
        elif role == "assistant":
            _append(turns, "assistant", content_blocks(message))
        elif role == "tool":
            _append(turns, "user", [_tool_result(message)])
        elif role == "user":
            parts = enumerate(oa.parts_of(message.get("content")))
            blocks = [
                cache_mark(_user_block(p, f"messages[{at}].content[{n}]"), p) for n, p in parts
            ]
            _append(turns, "user", blocks)
    if any("cache_control" in block for block in system):
        return system, turns
    return "\n\n".join(block["text"] for block in system), turns


def _append(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Add blocks as a turn; Anthropic wants roles to alternate, so merge into the last."""
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _user_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    kind = part.get("type")
    if kind == "text":
        return {"type": "text", "text": str(part.get("text") or "")}
    if kind == "image_url":
        url = oa.image_url(part)
        inline = oa.parse_data_url(url)
        if inline is None:
            return {"type": "image", "source": {"type": "url", "url": url}}
        mime, data = inline
        return {"type": "image", "source": {"type": "base64", "media_type": mime, "data": data}}
    if kind == "file":
        inline = oa.parse_data_url(str(oa.obj(part.get("file")).get("file_data") or ""))
        if inline is not None:
            mime, data = inline
            source = {"type": "base64", "media_type": mime, "data": data}
            return {"type": "document", "source": source}
    raise Unsupported(f"anthropic providers do not support '{kind}' content parts", param=where)


def _tool_result(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "tool_result",
        "tool_use_id": str(message.get("tool_call_id") or ""),
        "content": oa.text_of(message.get("content")),
    }


def _tool(function: dict[str, Any]) -> dict[str, Any]:
    tool: dict[str, Any] = {
        "name": function["name"],
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        tool["description"] = function["description"]
    return tool


def _tool_choice(body: dict[str, Any]) -> dict[str, Any] | None:
    raw = body.get("tool_choice")
    choice: dict[str, Any] | None = None
    if name := oa.forced_tool(raw):
        choice = {"type": "tool", "name": name}
    elif isinstance(raw, str) and raw in _TOOL_CHOICES:
        choice = {"type": _TOOL_CHOICES[raw]}
    if body.get("parallel_tool_calls") is False:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    return choice


# Anthropic answers → OpenAI chat answers --------------------------------------------


def chat_completion(message: dict[str, Any], model: str) -> bytes:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in oa.items(message.get("content")):
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
    if reasoning := _thinking(oa.items(message.get("content"))):
        choice["message"]["reasoning_content"] = reasoning
    ident = str(message.get("id") or "msg")
    return oa.completion(ident, str(message.get("model") or model), [choice], usage)


def _thinking(blocks: list[dict[str, Any]]) -> str:
    """The text of the ``thinking`` blocks (their signatures and redacted blocks left out),
    for OpenAI clients as ``reasoning_content`` (DeepSeek's, vLLM's and OpenRouter's name)."""
    return "".join(str(b.get("thinking") or "") for b in blocks if b.get("type") == "thinking")


def _error_message(data: dict[str, Any]) -> str:
    error = oa.obj(data.get("error"))
    return f"{error.get('type') or 'error'}: {error.get('message') or 'the provider failed'}"


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
        data = oa.event_json(event)
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
                self.error = _error_message(data)
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
        data = oa.event_json(event)
        kind = str(data.get("type") or event.event)
        if kind == "error":
            self.error = _error_message(data)
        elif kind == "message_start":
            self.usage = read_usage(oa.obj(oa.obj(data.get("message")).get("usage")), self.usage)
        elif kind == "message_delta":
            self.usage = read_usage(oa.obj(data.get("usage")), self.usage)
        elif kind == "message_stop":
            self.done = True
        if self._first is None and kind != "ping":
            self._first = kind
