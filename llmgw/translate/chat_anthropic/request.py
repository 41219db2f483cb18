"""OpenAI chat request → Anthropic Messages request.

System and developer messages become ``system``, tool calls become ``tool_use``
blocks, tool results ``tool_result`` blocks in a user turn, and consecutive turns of
one role are merged (Anthropic wants roles to alternate). Structured output and
reasoning are added by ``options.apply``; parameters are sorted by ``params.sort``.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, cast

from llmgw.core import Unsupported
from llmgw.translate import openai_chat as oa
from llmgw.translate.anthropic_messages import content_blocks
from llmgw.translate.chat_anthropic.prompt_cache import cache_mark, mark_tools, system_blocks
from llmgw.translate.wire import ChatRequest

_TOOL_CHOICES = MappingProxyType({"auto": "auto", "none": "none", "required": "any"})


def messages_request(
    body: ChatRequest | dict[str, Any], model: str, default_max: int
) -> dict[str, Any]:
    """The Messages request for ``body``; its structured output and thinking are added
    by ``options.apply`` and its parameters sorted by ``params.sort``."""
    chat = cast(dict[str, Any], body)
    system, turns = _turns(oa.items(chat.get("messages")))
    limit = oa.max_tokens(chat)
    out: dict[str, Any] = {"model": model, "messages": turns, "max_tokens": limit or default_max}
    if system:
        out["system"] = system
    if stop := oa.stop_list(chat):
        out["stop_sequences"] = stop
    for name in ("temperature", "top_p"):
        if isinstance(chat.get(name), int | float):
            out[name] = chat[name]
    if tools := oa.function_tools(chat):
        out["tools"] = [_tool(function) for function in tools]
        mark_tools(out["tools"], chat)
        if choice := _tool_choice(chat):
            out["tool_choice"] = choice
    user = chat.get("safety_identifier") or chat.get("user")
    if isinstance(user, str):
        out["metadata"] = {"user_id": user}
    if chat.get("stream") is True:
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
