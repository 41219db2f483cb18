"""OpenAI chat answers → Anthropic Messages answers: a ``chat.completion`` as a
``message``, and a provider's error body in Anthropic's dialect. Pure, no I/O."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, cast

import orjson

from llmgw.errors import anthropic_error, openai_error_type
from llmgw.translate import openai_chat as oa
from llmgw.translate.anthropic_messages import content_blocks
from llmgw.translate.wire import ChatCompletion, ChatUsage

STOP_REASONS = MappingProxyType(
    {
        "stop": "end_turn",
        "length": "max_tokens",
        "tool_calls": "tool_use",
        "function_call": "tool_use",
        "content_filter": "refusal",
    }
)
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


def message(body: bytes, model: str) -> bytes:
    """An OpenAI ``chat.completion`` as Anthropic's ``message`` object."""
    data = cast(ChatCompletion, oa.load(body))
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


def _usage(usage: ChatUsage | dict[str, Any]) -> dict[str, int]:
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
        kind = _STATUS_TYPES.get(status) or openai_error_type(status)
    message = str(detail.get("message") or f"the provider answered {status}")
    return anthropic_error(kind, message)
