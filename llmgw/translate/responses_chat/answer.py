"""OpenAI chat answers → OpenAI Responses answers: a ``chat.completion`` as a
``response`` object, and the pieces the streamed events share (the envelope, output
items, usage). Pure, no I/O."""

from __future__ import annotations

import time
from typing import Any

import orjson

from llmgw.core import Call
from llmgw.translate import openai_chat as oa

# chat finish_reason → the Responses API's incomplete_details.reason
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_id(ident: object) -> str:
    """A Responses id (``resp_…``), made from the chat answer's own."""
    text = str(ident or "")
    return (
        text if text.startswith("resp_") else "resp_" + (text.removeprefix("chatcmpl-") or "llmgw")
    )


def envelope(
    call: Call, ident: str, model: str, status: str, created: int | None = None
) -> dict[str, Any]:
    """A ``response`` object with no output yet, echoing what the client asked."""
    body = call.body
    text = oa.obj(body.get("text")) or {"format": {"type": "text"}}
    return {
        "id": ident,
        "object": "response",
        "created_at": int(time.time()) if created is None else created,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": body.get("temperature"),
        "text": text,
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p"),
        "truncation": "disabled",
        "usage": None,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def message_item(ident: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [text_part(text)] if status == "completed" else []
    return {
        "type": "message",
        "id": ident,
        "status": status,
        "role": "assistant",
        "content": content,
    }


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def function_item(
    ident: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": ident,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def usage(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + completion,
    }


def chat_usage(raw: dict[str, Any]) -> dict[str, Any]:
    return usage(
        oa.count(raw.get("prompt_tokens")),
        oa.count(raw.get("completion_tokens")),
        oa.count(oa.obj(raw.get("prompt_tokens_details")).get("cached_tokens")),
        oa.count(oa.obj(raw.get("completion_tokens_details")).get("reasoning_tokens")),
    )


def finish(out: dict[str, Any], finish_reason: object) -> dict[str, Any]:
    """``out`` marked completed, or incomplete for a cut-off answer."""
    reason = _INCOMPLETE.get(str(finish_reason))
    out["status"] = "incomplete" if reason else "completed"
    out["incomplete_details"] = {"reason": reason} if reason else None
    return out


def response(call: Call, body: bytes, model: str) -> bytes:
    """An OpenAI ``chat.completion`` as a Responses ``response`` object."""
    data = oa.load(body)
    first = oa.items(data.get("choices"))[:1]
    reply = oa.obj(first[0].get("message")) if first else {}
    ident = response_id(data.get("id"))
    created = data.get("created")
    out = envelope(
        call,
        ident,
        str(data.get("model") or model),
        "completed",
        created if isinstance(created, int) else None,
    )
    text = oa.text_of(reply.get("content"))
    if text:
        out["output"].append(message_item("msg_" + ident.removeprefix("resp_"), text))
    for number, tool in enumerate(oa.items(reply.get("tool_calls"))):
        function = oa.obj(tool.get("function"))
        call_id = str(tool.get("id") or f"call_{number}")
        arguments = function.get("arguments")
        out["output"].append(
            function_item(
                f"fc_{call_id}",
                call_id,
                str(function.get("name") or ""),
                arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode(),
            )
        )
    out["usage"] = chat_usage(oa.obj(data.get("usage")))
    return orjson.dumps(finish(out, first[0].get("finish_reason") if first else None))
