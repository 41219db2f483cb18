"""Gemini answers → OpenAI answers: a ``GenerateContentResponse`` as a
``chat.completion``, ``batchEmbedContents`` vectors as an embeddings list, Gemini's
usage and error bodies in OpenAI's terms. Pure, no I/O."""

from __future__ import annotations

import base64
import struct
import uuid
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson

from llmgw.core import Usage, estimate_tokens
from llmgw.errors import openai_error, openai_error_type
from llmgw.translate import openai_chat as oa
from llmgw.translate.wire import GeminiCandidate, GeminiEmbeddings, GeminiResponse

FINISH_REASONS = MappingProxyType(
    {"STOP": "stop", "MAX_TOKENS": "length"}
    | dict.fromkeys(
        ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"),
        "content_filter",
    )
)


def read_usage(meta: Mapping[str, Any]) -> Usage:
    """``usageMetadata`` → usage; thinking tokens are billed as output, so count them."""
    if not meta:
        return Usage()
    output = oa.count(meta.get("candidatesTokenCount")) + oa.count(meta.get("thoughtsTokenCount"))
    return Usage(oa.count(meta.get("promptTokenCount")), output)


def error_body(status: int, body: bytes) -> bytes:
    """Gemini's error body in OpenAI's dialect (its ``status`` name as the ``code``)."""
    return openai_error(*error_parts(body, status))


def error_parts(body: bytes, status: int) -> tuple[str, str, str | None]:
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
    return message, openai_error_type(status), code if isinstance(code, str) else None


def response_ident(data: GeminiResponse | dict[str, Any]) -> str:
    return str(data.get("responseId") or uuid.uuid4().hex[:24])


def call_id(call: dict[str, Any], response_id: str, position: int) -> str:
    """Gemini's own call id when it sends one, else one made from the response's id."""
    return str(call.get("id") or f"call_{response_id}_{position}")


def finish_reason(candidate: GeminiCandidate | dict[str, Any], called: bool) -> str | None:
    reason = candidate.get("finishReason")
    if not isinstance(reason, str):
        return None
    finish = FINISH_REASONS.get(reason, "stop")
    return "tool_calls" if called and finish == "stop" else finish


def blocked(data: GeminiResponse | dict[str, Any]) -> str | None:
    """Why the prompt itself was refused (``promptFeedback.blockReason``), if it was."""
    reason = oa.obj(data.get("promptFeedback")).get("blockReason")
    return f"the prompt was blocked by the provider ({reason})" if reason else None


def visible_parts(candidate: GeminiCandidate | dict[str, Any]) -> list[dict[str, Any]]:
    """The answer's parts, without thought summaries."""
    return [
        p for p in oa.items(oa.obj(candidate.get("content")).get("parts")) if not p.get("thought")
    ]


def chat_completion(data: GeminiResponse | dict[str, Any], model: str) -> bytes:
    response_id = response_ident(data)
    choices = []
    for position, candidate in enumerate(oa.items(data.get("candidates"))):
        parts = visible_parts(candidate)
        text = "".join(str(p["text"]) for p in parts if isinstance(p.get("text"), str))
        found = [c for c in (oa.obj(p.get("functionCall")) for p in parts) if c]
        calls = [
            oa.tool_call(call_id(c, response_id, n), str(c.get("name") or ""), c.get("args"))
            for n, c in enumerate(found)
        ]
        finish = finish_reason(candidate, bool(calls)) or "stop"
        index = candidate.get("index", position)
        choices.append(oa.choice(index, text if text or not calls else None, calls, finish))
    if not choices and (refusal := blocked(data)):
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


def embeddings(
    request: dict[str, Any], model: str, data: GeminiEmbeddings | dict[str, Any]
) -> bytes:
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
