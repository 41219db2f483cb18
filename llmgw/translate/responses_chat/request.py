"""OpenAI Responses request → OpenAI chat request: what a ``/v1/responses`` client asks,
asked of a provider that serves chat (natively or through its own translator).

``instructions`` become a system message; ``input`` (a string, or message,
``function_call`` and ``function_call_output`` items) the conversation; function tools
chat functions; ``text.format`` a ``response_format``; ``max_output_tokens``
``max_tokens``; ``reasoning.effort`` ``reasoning_effort``. What chat cannot carry (a
stored conversation, hosted tools) is ``Unsupported``, naming the parameter. Pure, no I/O.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import orjson

from llmgw.core import Call, Unsupported
from llmgw.translate import openai_chat as oa

_ROLES = MappingProxyType(
    {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
)
_TEXT_PARTS = frozenset({"input_text", "output_text", "text", "refusal"})
_COPIED = ("temperature", "top_p", "parallel_tool_calls", "user")


def chat_call(call: Call) -> Call:
    """The OpenAI chat call that asks what the ``responses`` call asks."""
    body = chat_request(call.body)
    return Call("chat", call.model, call.stream, body, orjson.dumps(body), call.headers)


def chat_request(body: dict[str, Any]) -> dict[str, Any]:
    if body.get("previous_response_id") is not None or body.get("conversation") is not None:
        param = "previous_response_id" if body.get("previous_response_id") else "conversation"
        raise Unsupported(
            f"'{param}' needs a provider that keeps conversation state (the Responses API "
            "spoken natively, e.g. openai); send the whole conversation in 'input' instead",
            param=param,
        )
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    source = body.get("input")
    if isinstance(source, str):
        messages.append({"role": "user", "content": source})
    else:
        for index, item in enumerate(oa.items(source)):
            _add_item(messages, item, index)
    out: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    for name in _COPIED:
        if body.get(name) is not None:
            out[name] = body[name]
    if isinstance(body.get("max_output_tokens"), int):
        out["max_tokens"] = body["max_output_tokens"]
    tools = [_function(tool, i) for i, tool in enumerate(oa.items(body.get("tools")))]
    if tools:
        out["tools"] = tools
    choice = _tool_choice(body.get("tool_choice"))
    if choice is not None:
        out["tool_choice"] = choice
    response_format = _response_format(oa.obj(oa.obj(body.get("text")).get("format")))
    if response_format is not None:
        out["response_format"] = response_format
    effort = oa.obj(body.get("reasoning")).get("effort")
    if isinstance(effort, str):
        out["reasoning_effort"] = effort
    if body.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}  # response.completed carries usage
    return out


def _add_item(messages: list[dict[str, Any]], item: dict[str, Any], index: int) -> None:
    kind = item.get("type", "message")
    if kind == "message":
        role = _ROLES.get(str(item.get("role")))
        if role is None:
            raise Unsupported(f"input[{index}] has an unknown role", param=f"input[{index}]")
        messages.append({"role": role, "content": _content(item.get("content"), index)})
    elif kind == "function_call":
        call = oa.tool_call(
            str(item.get("call_id") or item.get("id") or ""),
            str(item.get("name") or ""),
            item.get("arguments"),
        )
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant" and "tool_calls" in last:
            last["tool_calls"].append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        text = output if isinstance(output, str) else oa.text_of(_chat_parts(output, index))
        messages.append(
            {"role": "tool", "tool_call_id": str(item.get("call_id") or ""), "content": text}
        )
    elif kind != "reasoning":  # reasoning items are the provider's own, dropped
        raise Unsupported(
            f"input[{index}] is a '{kind}' item, which only the Responses API itself serves",
            param=f"input[{index}]",
        )


def _content(content: object, index: int) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts = _chat_parts(content, index)
    if all(part["type"] == "text" for part in parts):
        return "".join(part["text"] for part in parts)
    return parts


def _chat_parts(content: object, index: int) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for number, part in enumerate(oa.items(content)):
        kind = part.get("type")
        if kind in _TEXT_PARTS:
            parts.append({"type": "text", "text": str(part.get("text") or part.get("refusal"))})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            image = {"url": part["image_url"]}
            if isinstance(part.get("detail"), str):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "input_file" and isinstance(part.get("file_data"), str):
            name = str(part.get("filename") or "document.pdf")
            parts.append(
                {"type": "file", "file": {"filename": name, "file_data": part["file_data"]}}
            )
        else:
            where = f"input[{index}].content[{number}]"
            raise Unsupported(f"{where} ('{kind}') cannot be sent as chat", param=where)
    return parts


def _function(tool: dict[str, Any], index: int) -> dict[str, Any]:
    if tool.get("type") != "function":
        raise Unsupported(
            f"tools[{index}] is a hosted '{tool.get('type')}' tool, which only the Responses "
            "API itself serves",
            param=f"tools[{index}]",
        )
    function: dict[str, Any] = {"name": tool.get("name"), "parameters": tool.get("parameters")}
    if function["parameters"] is None:
        function["parameters"] = {"type": "object", "properties": {}}
    for name in ("description", "strict"):
        if tool.get(name) is not None:
            function[name] = tool[name]
    return {"type": "function", "function": function}


def _tool_choice(choice: object) -> object:
    if isinstance(choice, str):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    return None


def _response_format(fmt: dict[str, Any]) -> dict[str, Any] | None:
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") != "json_schema":
        return None
    schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
    return {"type": "json_schema", "json_schema": schema}
