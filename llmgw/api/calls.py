"""A client's request body → a validated ``Call``, or a 400/413 naming the field.

Only the fields the gateway itself reads are checked here; everything else is the
provider's to judge, and is passed on untouched.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson

from llmgw.api.extensions import NAMES, extract
from llmgw.core import Call, Endpoint
from llmgw.errors import InvalidRequest

# Client headers that describe the request rather than authenticate it, passed on to
# providers that understand them (the Anthropic API's version and beta flags).
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")
# How deeply a body may nest. orjson writes at most 254 levels; what the gateway sends
# on (a cache key, a renamed model, a translated request) must stay writable.
MAX_DEPTH = 200
_WRITABLE_DEPTH = 254
# A model name goes into access lines and the X-LLMGW-Model header: no control
# characters (C0, DEL, C1, Unicode line and paragraph separators), and a sane length.
MAX_MODEL_LENGTH = 256
# The headers ``call_mark`` reads: the extensions', then the forwarded ones.
_MARKED = (*NAMES, *FORWARDED_HEADERS)
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def check_model(model: str) -> None:
    """400 ``param: model`` for a name that may not travel into logs and headers."""
    if len(model) > MAX_MODEL_LENGTH:
        raise InvalidRequest(
            f"'model' is {len(model)} characters; at most {MAX_MODEL_LENGTH} are allowed",
            param="model",
        )
    if _UNPRINTABLE.search(model):
        raise InvalidRequest("'model' must not contain control characters", param="model")


def parse_call(endpoint: Endpoint, raw: bytes, headers: Mapping[str, str] | None = None) -> Call:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc.msg}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object")
    _check_depth(body, raw)
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("'model' is required and must be a non-empty string", param="model")
    check_model(model)
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean", param="stream")
    _optional(body, "stream_options", dict, "an object")
    _optional(body, "user", str, "a string")
    _CHECKS[endpoint](body)
    extensions, stripped = extract(body, headers)
    if stripped is not None:  # the gateway's own fields never go upstream: encode once
        body, raw = stripped, orjson.dumps(stripped)
    forwarded = {}
    if endpoint in ("messages", "count_tokens") and headers is not None:
        forwarded = {name: headers[name] for name in FORWARDED_HEADERS if name in headers}
        for name, value in forwarded.items():
            if not (value.isascii() and value.isprintable()):
                raise InvalidRequest(f"The '{name}' header must be printable ASCII")
    return Call(endpoint, model, bool(stream), body, raw, MappingProxyType(forwarded), extensions)


def call_mark(
    endpoint: Endpoint, raw: bytes, headers: Mapping[str, str], name: str | None
) -> tuple[object, ...]:
    """What ``parse_call``'s result and the call's cache key depend on: the endpoint,
    the body's bytes, the headers it reads (extensions, and the ones forwarded) and the
    key's name (``cache.scope: key``). The cache's memo of hit calls is keyed by it."""
    return (endpoint, raw, name, *map(headers.get, _MARKED))


def prompt_excerpt(call: Call, limit: int = 200) -> str:
    """The last user message's text, cut to ``limit`` characters (logging.log_prompts)."""
    body = call.body
    if call.endpoint in ("completions", "embeddings", "images", "moderations", "audio_speech"):
        value = body.get("prompt" if call.endpoint in ("completions", "images") else "input")
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        return text[:limit]
    if call.endpoint == "responses" and isinstance(body.get("input"), str):
        return str(body["input"])[:limit]
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(
                    str(part.get("text", "")) for part in content if isinstance(part, dict)
                )
            return str(content or "")[:limit]
    return ""


def _check_depth(body: dict[str, Any], raw: bytes) -> None:
    """400 for a body nested deeper than ``MAX_DEPTH`` (bodies with fewer brackets than
    that cannot be, and skip the check)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return
    nested: object = body
    for _ in range(_WRITABLE_DEPTH - MAX_DEPTH):
        nested = [nested]
    try:
        orjson.dumps(nested)
    except TypeError:  # orjson.JSONEncodeError: "Recursion limit reached"
        raise InvalidRequest(
            f"The request body is nested too deeply (at most {MAX_DEPTH} levels)"
        ) from None


def _optional(body: dict[str, Any], name: str, kind: type, described: str) -> None:
    value = body.get(name)
    if value is not None and not isinstance(value, kind):
        raise InvalidRequest(f"'{name}' must be {described}", param=name)


def _check_chat(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest(
            "'messages' is required and must be a non-empty array", param="messages"
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest(
                f"'messages[{index}]' must be an object with a string 'role'",
                param=f"messages[{index}]",
            )
    for name in ("max_tokens", "max_completion_tokens", "n"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise InvalidRequest(f"'{name}' must be an integer", param=name)


def _check_completions(body: dict[str, Any]) -> None:
    prompt = body.get("prompt")
    if not isinstance(prompt, str | list):
        raise InvalidRequest(
            "'prompt' is required and must be a string or an array", param="prompt"
        )


def _check_embeddings(body: dict[str, Any]) -> None:
    value = body.get("input")
    if not isinstance(value, str | list) or (isinstance(value, list) and not value):
        raise InvalidRequest(
            "'input' is required and must be a string or a non-empty array", param="input"
        )


def _check_messages(body: dict[str, Any]) -> None:
    """Anthropic's Messages API: messages and max_tokens are required."""
    _check_chat(body)
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise InvalidRequest(
            "'max_tokens' is required and must be a positive integer", param="max_tokens"
        )
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise InvalidRequest("'system' must be a string or an array", param="system")


def _check_responses(body: dict[str, Any]) -> None:
    """The Responses API: ``input`` (text or items), unless a stored conversation goes on."""
    value = body.get("input")
    if value is None and body.get("previous_response_id") is not None:
        return
    if not isinstance(value, str | list) or (isinstance(value, list) and not value):
        raise InvalidRequest(
            "'input' is required and must be a string or a non-empty array", param="input"
        )
    for index, item in enumerate(value if isinstance(value, list) else ()):
        if not isinstance(item, dict):
            raise InvalidRequest(f"'input[{index}]' must be an object", param=f"input[{index}]")
    for name in ("instructions", "previous_response_id"):
        _optional(body, name, str, "a string")
    _optional(body, "tools", list, "an array")
    _optional(body, "text", dict, "an object")
    value = body.get("max_output_tokens")
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise InvalidRequest("'max_output_tokens' must be an integer", param="max_output_tokens")


def _required_text(body: dict[str, Any], name: str) -> None:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"'{name}' is required and must be a non-empty string", param=name)


def _check_moderations(body: dict[str, Any]) -> None:
    value = body.get("input")
    if not isinstance(value, str | list) or (isinstance(value, list) and not value):
        raise InvalidRequest(
            "'input' is required and must be a string or a non-empty array", param="input"
        )


def _check_images(body: dict[str, Any]) -> None:
    _required_text(body, "prompt")


def _check_speech(body: dict[str, Any]) -> None:
    _required_text(body, "input")
    voice = body.get("voice")
    if not isinstance(voice, str | dict) or not voice:
        raise InvalidRequest("'voice' is required", param="voice")


_CHECKS = {
    "chat": _check_chat,
    "moderations": _check_moderations,
    "images": _check_images,
    "audio_speech": _check_speech,
    "responses": _check_responses,
    "completions": _check_completions,
    "embeddings": _check_embeddings,
    "messages": _check_messages,
    "count_tokens": _check_chat,  # as /v1/messages, without max_tokens
}
