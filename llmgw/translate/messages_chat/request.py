"""Anthropic Messages request → OpenAI chat request: what a ``/v1/messages`` client
asks, asked of a provider that speaks OpenAI's chat format (or is reached through it).

The system prompt becomes a system message, ``tool_result`` blocks tool messages,
images and PDF documents content parts, tools functions, ``thinking`` a
``reasoning_effort``. Pure, no I/O.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, cast

import orjson

from llmgw.core import Call
from llmgw.translate import openai_chat as oa
from llmgw.translate.wire import AnthropicMessage

_TOOL_CHOICES = MappingProxyType({"auto": "auto", "any": "required", "none": "none"})


def chat_call(call: Call) -> Call:
    """The OpenAI chat call that asks what the ``messages`` call asks."""
    body = chat_request(call.body)
    return Call("chat", call.model, call.stream, body, orjson.dumps(body), call.headers)


def chat_request(request: AnthropicMessage | dict[str, Any]) -> dict[str, Any]:
    body = cast(dict[str, Any], request)
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
