"""OpenAI chat-completion building blocks shared by the translators.

Every translator has OpenAI's chat format on one side: these helpers read an
OpenAI request (content parts, data URLs, tool calls, limits) and write OpenAI
answers (completions, stream chunks), so that each translator holds only the facts
of the format on its other side. Error bodies are rendered by ``llmgw.errors``.
Pure functions, no I/O.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from llmgw.core import Call, Usage
from llmgw.errors import stream_error_event
from llmgw.sse import Event, encode

DONE = b"data: [DONE]\n\n"


# Reading ---------------------------------------------------------------------------


def load(data: bytes) -> dict[str, Any]:
    """A JSON object from ``data``; anything else (or broken JSON) reads as ``{}``."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def event_json(event: Event) -> dict[str, Any]:
    return load(event.data)


def obj(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def items(value: object) -> list[dict[str, Any]]:
    """The objects of a JSON array (other members and non-arrays are skipped)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def parts_of(content: object) -> list[dict[str, Any]]:
    """A message's ``content`` as a list of parts: a string becomes one text part."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return items(content)


def text_of(content: object) -> str:
    """The text of a ``content`` (string or parts), parts joined without separator."""
    return "".join(
        str(part.get("text") or part.get("refusal") or "")
        for part in parts_of(content)
        if part.get("type") in ("text", "refusal")
    )


def image_url(part: dict[str, Any]) -> str:
    """The URL of an ``image_url`` part (an object with ``url``, or a bare string)."""
    value = part.get("image_url")
    return str(value.get("url") or "") if isinstance(value, dict) else str(value or "")


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``data:<mime>;base64,<data>`` → ``(mime, data)``; None for any other URL."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    if not sep or not header.endswith(";base64"):
        return None
    return header.removesuffix(";base64") or "application/octet-stream", data


def data_url(mime: str, data: str) -> str:
    return f"data:{mime};base64,{data}"


def arguments(raw: object) -> dict[str, Any]:
    """A tool call's ``arguments`` (a JSON string) as an object; ``{}`` if it is not one."""
    if isinstance(raw, dict):
        return raw
    return load(raw.encode()) if isinstance(raw, str) else {}


def max_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def stop_list(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    if isinstance(stop, str):
        return [stop]
    return [s for s in stop if isinstance(s, str)] if isinstance(stop, list) else []


def function_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``function`` objects of the request's function tools."""
    return [
        obj(tool.get("function"))
        for tool in items(body.get("tools"))
        if tool.get("type", "function") == "function" and obj(tool.get("function")).get("name")
    ]


def forced_tool(choice: object) -> str | None:
    """The function name of a ``tool_choice`` that forces one function, else None."""
    return obj(obj(choice).get("function")).get("name") if isinstance(choice, dict) else None


def wants_usage(call: Call) -> bool:
    """Whether an OpenAI client asked for the usage chunk at the end of its stream."""
    options = call.body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# Writing ---------------------------------------------------------------------------


def usage_dict(usage: Usage, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    prompt, completion = usage.prompt_tokens or 0, usage.completion_tokens or 0
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    if reasoning:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return out


def tool_call(ident: str, name: str, args: object) -> dict[str, Any]:
    text = args if isinstance(args, str) else orjson.dumps(args if args is not None else {})
    return {
        "id": ident,
        "type": "function",
        "function": {"name": name, "arguments": text if isinstance(text, str) else text.decode()},
    }


def choice(
    index: int,
    text: str | None,
    tool_calls: list[dict[str, Any]],
    finish_reason: str,
    refusal: str | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": refusal}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"index": index, "message": message, "logprobs": None, "finish_reason": finish_reason}


def completion(
    ident: str, model: str, choices: list[dict[str, Any]], usage: dict[str, Any]
) -> bytes:
    return orjson.dumps(
        {
            "id": ident,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": usage,
        }
    )


class ChunkWriter:
    """The ``chat.completion.chunk`` events of one stream (one id, time and model)."""

    __slots__ = ("created", "ident", "include_usage", "model", "started")

    def __init__(self, model: str, include_usage: bool, ident: str = "chatcmpl-llmgw") -> None:
        self.ident = ident
        self.model = model
        self.created = int(time.time())
        self.include_usage = include_usage
        self.started = False  # whether anything was written yet

    def chunk(
        self, delta: dict[str, Any], finish: str | None = None, index: int = 0, **extra: Any
    ) -> bytes:
        self.started = True
        body = {
            "id": self.ident,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            ],
            **extra,
        }
        return encode(orjson.dumps(body))

    def role(self, index: int = 0) -> bytes:
        return self.chunk({"role": "assistant", "content": ""}, index=index)

    def text(self, text: str, index: int = 0) -> bytes:
        return self.chunk({"content": text}, index=index) if text else b""

    def reasoning(self, text: str, index: int = 0) -> bytes:
        """Reasoning text, as ``reasoning_content`` (the name DeepSeek, vLLM and others use)."""
        return self.chunk({"reasoning_content": text}, index=index) if text else b""

    def tool_start(
        self, position: int, ident: str, name: str, args: str = "", index: int = 0
    ) -> bytes:
        call = {"index": position, **tool_call(ident, name, args)}
        return self.chunk({"tool_calls": [call]}, index=index)

    def tool_args(self, position: int, fragment: str, index: int = 0) -> bytes:
        if not fragment:
            return b""
        call = {"index": position, "function": {"arguments": fragment}}
        return self.chunk({"tool_calls": [call]}, index=index)

    def finish(self, reason: str, index: int = 0) -> bytes:
        return self.chunk({}, reason, index=index)

    def closing(self, usage: dict[str, Any]) -> bytes:
        """The end of a complete stream: the usage chunk if asked for, then ``[DONE]``."""
        if not self.include_usage:
            return DONE
        body = {
            "id": self.ident,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage,
        }
        return encode(orjson.dumps(body)) + DONE

    @staticmethod
    def error(message: str) -> bytes:
        """The event that tells an OpenAI client its stream failed midway."""
        return stream_error_event(message, "openai")
