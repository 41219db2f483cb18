"""The built-in ``mock`` provider: answers in OpenAI's wire format with no network.

It echoes the last user message (chat; in each of ``n`` choices) or the prompt
(completions), word by word when streamed, returns deterministic unit vectors for
embeddings (hashed words and trigrams, ``mock_embed.py``: similar texts, similar
vectors) and the media answers of ``mock_media`` (moderations, images, speech), so the
gateway works out of the box and tests and benchmarks have a predictable upstream. Its
provider type declares ``local``: the runtime gives it an
in-process transport, which calls ``answer``.
Pure functions: the pacing (``latency``, ``chunk_delay``) is applied by the
transport in ``upstream.py``.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from llmgw.config import MockProvider, ProviderConfig
from llmgw.core import (
    Call,
    Endpoint,
    UpstreamRequest,
    WireFormat,
    estimate_tokens,
    last_user_text,
)
from llmgw.multipart import MultipartBody
from llmgw.providers import mock_media as media
from llmgw.providers.base import LocalReply, ProviderType
from llmgw.providers.mock_embed import embed

MOCK_URL = "mock://local"
MAX_CHOICES = 128  # OpenAI's bound on ``n``
_ENDPOINTS: dict[str, Endpoint] = {
    "/chat/completions": "chat",
    "/completions": "completions",
    "/moderations": "moderations",
    "/images/generations": "images",
    "/audio/speech": "audio_speech",
    "/audio/transcriptions": "audio_transcriptions",
    "/audio/translations": "audio_translations",
}


def _formats() -> frozenset[WireFormat]:
    return frozenset(
        {
            "chat",
            "completions",
            "embeddings",
            "moderations",
            "images",
            "audio_speech",
            "audio_transcriptions",
            "audio_translations",
        }
    )


@dataclass(frozen=True, slots=True)
class MockReply:
    status: int
    content_type: str
    chunks: tuple[bytes, ...]


@dataclass(frozen=True)
class Mock(ProviderType):
    default_base_url: str = MOCK_URL
    native: frozenset[WireFormat] = field(default_factory=_formats)
    requires_key: bool = False

    def needs_key(self, provider: ProviderConfig) -> bool:
        return False

    def request(self, call: Call, model: str, provider: ProviderConfig) -> UpstreamRequest:
        sent = super().request(call, model, provider)
        return UpstreamRequest(sent.method, sent.url, {}, sent.body, local=True)


def answer(request: UpstreamRequest, provider: ProviderConfig) -> LocalReply:
    """The reply to a request ``Mock.request`` made, paced as ``provider`` says."""
    endpoint = _ENDPOINTS.get(request.url.removeprefix(MOCK_URL), "embeddings")
    if not isinstance(provider, MockProvider):
        raise TypeError(f"a {provider.type} provider is not answered by the mock")
    if isinstance(request.body, MultipartBody):  # an upload: only its size is read
        form = request.body
        status, kind, text = media.transcription(form.fields, form.upload.size)
        return LocalReply(status, kind, (text,), provider.latency)
    if not isinstance(request.body, bytes):
        raise TypeError("the mock reads JSON bodies and multipart uploads only")
    body = orjson.loads(request.body)
    call = Call(endpoint, body["model"], body.get("stream") is True, body, request.body)
    reply = respond(call, call.model, provider)
    return LocalReply(
        reply.status, reply.content_type, reply.chunks, provider.latency, provider.chunk_delay
    )


MOCK = Mock("mock", local=answer)


def respond(call: Call, model: str, provider: MockProvider) -> MockReply:
    """The whole answer to ``call``: one JSON body, or the SSE events of a stream."""
    created = int(time.time())
    ident = hashlib.sha256(call.raw).hexdigest()[:24]
    if call.endpoint == "embeddings":
        return _json(_embeddings(call.body, model, provider.embedding_dimensions))
    if call.endpoint == "moderations":
        return MockReply(200, "application/json", (media.moderation(call.body, model, ident),))
    if call.endpoint == "images":
        status, body = media.images(call.body)
        return MockReply(status, "application/json", (body,))
    if call.endpoint == "audio_speech":
        return MockReply(200, "audio/wav", (media.wav(str(call.body.get("input") or "")),))
    if call.endpoint == "completions":
        text = _prompt_text(call.body.get("prompt"))
        words, finish = _limit(text, call.body.get("max_tokens"))
        if call.stream:
            return _completion_stream(call, model, words, finish, f"cmpl-{ident}", created)
        return _json(
            {
                "id": f"cmpl-{ident}",
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [
                    {"text": "".join(words), "index": 0, "logprobs": None, "finish_reason": finish}
                ],
                "usage": _usage(text, words),
            }
        )
    n = call.body.get("n")
    n = 1 if n is None else n
    if not isinstance(n, int) or not 1 <= n <= MAX_CHOICES:
        message = f"'n' must be an integer from 1 to {MAX_CHOICES}"
        error = {"message": message, "type": "invalid_request_error", "param": "n", "code": None}
        return MockReply(400, "application/json", (orjson.dumps({"error": error}),))
    text = last_user_text(call.body.get("messages"))
    limit = call.body.get("max_completion_tokens", call.body.get("max_tokens"))
    words, finish = _limit(text, limit)
    if call.stream:
        return _chat_stream(call, model, words, finish, f"chatcmpl-{ident}", created, n)
    return _json(
        {
            "id": f"chatcmpl-{ident}",
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": index,
                    "message": {"role": "assistant", "content": "".join(words), "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish,
                }
                for index in range(n)
            ],
            "usage": _usage(text, words, n),
        }
    )


def _json(payload: dict[str, Any]) -> MockReply:
    return MockReply(200, "application/json", (orjson.dumps(payload),))


def _sse(events: list[dict[str, Any]]) -> MockReply:
    chunks = tuple(b"data: " + orjson.dumps(e) + b"\n\n" for e in events)
    return MockReply(200, "text/event-stream", (*chunks, b"data: [DONE]\n\n"))


def _chat_stream(
    call: Call, model: str, words: list[str], finish: str, ident: str, created: int, n: int
) -> MockReply:
    """Each step of the answer once per choice, choices in turn (as OpenAI interleaves)."""

    def chunk(delta: dict[str, Any], finish_reason: str | None, index: int) -> dict[str, Any]:
        return {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [
                {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }

    choices = range(n)
    events = [chunk({"role": "assistant", "content": ""}, None, i) for i in choices]
    events += [chunk({"content": word}, None, i) for word in words for i in choices]
    events += [chunk({}, finish, i) for i in choices]
    if _wants_usage(call):
        text = last_user_text(call.body.get("messages"))
        events.append(
            {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": _usage(text, words, n),
            }
        )
    return _sse(events)


def _completion_stream(
    call: Call, model: str, words: list[str], finish: str, ident: str, created: int
) -> MockReply:
    def chunk(text: str, finish_reason: str | None) -> dict[str, Any]:
        return {
            "id": ident,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [
                {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}
            ],
        }

    events = [chunk(word, None) for word in words] + [chunk("", finish)]
    if _wants_usage(call):
        prompt = _prompt_text(call.body.get("prompt"))
        events.append({**chunk("", None), "choices": [], "usage": _usage(prompt, words)})
    return _sse(events)


def _embeddings(body: dict[str, Any], model: str, default_dims: int) -> dict[str, Any]:
    raw = body.get("input")
    inputs = raw if isinstance(raw, list) and raw and not isinstance(raw[0], int) else [raw]
    dims = body.get("dimensions")
    dims = dims if isinstance(dims, int) and 0 < dims <= 8192 else default_dims
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, item in enumerate(inputs):
        text = item if isinstance(item, str) else orjson.dumps(item).decode()
        vector = embed(text, dims)
        embedding: object = (
            base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode() if as_base64 else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(estimate_tokens(str(i)) for i in inputs)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _wants_usage(call: Call) -> bool:
    options = call.body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _limit(text: str, max_tokens: object) -> tuple[list[str], str]:
    """The reply as word pieces (each keeps its trailing space), cut at max_tokens."""
    words = [w + " " for w in text.split(" ")]
    if words:
        words[-1] = words[-1][:-1]
    words = [w for w in words if w]
    if isinstance(max_tokens, int) and 0 < max_tokens < len(words):
        return words[:max_tokens], "length"
    return words, "stop"


def _usage(prompt: str, words: list[str], choices: int = 1) -> dict[str, int]:
    prompt_tokens = estimate_tokens(prompt)
    completion_tokens = len(words) * choices
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _prompt_text(prompt: object) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        return str(prompt[0])
    return ""
