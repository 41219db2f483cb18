"""A fast OpenAI-compatible upstream for the benchmarks, run in its own process.

    python -m tests.benchmarks.upstream --port 9001

``POST /v1/chat/completions`` answers a ``chat.completion`` JSON body, or with
``"stream": true`` an SSE stream of ``chat.completion.chunk`` events ending with
``data: [DONE]`` (plus a usage chunk when ``stream_options.include_usage`` is set).
``max_tokens`` is the number of content chunks; ``metadata.chunk_delay_ms`` the pause
between two chunks, kept on an absolute schedule so pacing does not drift. ``GET
/health`` answers ``ok``.

``POST /v1/messages`` speaks Anthropic's Messages API (for translated streams: an
``anthropic`` provider behind an OpenAI client): a ``message`` JSON body, or with
``"stream": true`` the real event sequence, one HTTP chunk per event: ``message_start``,
``content_block_start``, ``max_tokens`` times ``content_block_delta``, ``content_block_stop``,
``message_delta`` (with the usage) and ``message_stop``. The gateway's translation keeps
no ``metadata`` but the user id, so pacing is asked for there: ``metadata.user_id`` of
``pace-<ms>`` (OpenAI's ``user: "pace-20"`` through the gateway).

``POST /v1/embeddings`` answers one 1,536-dimension vector (text-embedding-3-small's
size) drawn from a hash of the input, so different texts are nearly orthogonal and a
semantic cache in front only ever misses. ``POST /v1/traces`` accepts an OTLP/HTTP
export and drops it (the tracing sink of ``costs.py``); ``GET /v1/traces`` answers how
many it received.

It has to be much cheaper than anything measured in front of it, so it is a raw
asyncio protocol on uvloop (HTTP/1.1 keep-alive, ``Content-Length`` request bodies)
and every response is serialised once per (model, chunks) and reused.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
from typing import Any, cast

import numpy as np
import orjson
import uvloop

CREATED = 1700000000
_OPENAI_HEADERS = (
    b"openai-organization: bench-org\r\n"
    b"openai-processing-ms: 42\r\n"
    b"openai-version: 2020-10-01\r\n"
    b"x-ratelimit-limit-requests: 10000\r\n"
    b"x-ratelimit-remaining-requests: 9999\r\n"
    b"x-ratelimit-reset-requests: 6ms\r\n"
    b"x-request-id: req_bench0000000000000000000000\r\n"
)
_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n" + _OPENAI_HEADERS + b"\r\n"
)
_LAST_CHUNK = b"0\r\n\r\n"


def _response(status: str, content_type: bytes, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n".encode()
    return head + b"Content-Type: " + content_type + b"\r\n" + _OPENAI_HEADERS + b"\r\n" + body


_HEALTH = _response("200 OK", b"text/plain", b"ok")
_TRACES = _response("200 OK", b"application/x-protobuf", b"")
EMBEDDING_DIMS = 1536
_NOT_FOUND = _response(
    "404 Not Found",
    b"application/json",
    b'{"error":{"message":"not found","type":"invalid_request_error"}}',
)


def _usage(chunks: int) -> dict[str, int]:
    return {"prompt_tokens": 24, "completion_tokens": chunks, "total_tokens": 24 + chunks}


@functools.lru_cache(maxsize=256)
def completion(model: str, chunks: int) -> bytes:
    """A whole non-streamed response, HTTP head included."""
    body = {
        "id": "chatcmpl-bench0000000000000000000000",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "system_fingerprint": "fp_bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "tok " * chunks, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(chunks),
    }
    return _response("200 OK", b"application/json", orjson.dumps(body))


def embedding(model: str, text: bytes) -> bytes:
    """An embeddings response, HTTP head included: a unit vector seeded by ``text``."""
    seed = int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")
    vector = np.random.default_rng(seed).standard_normal(EMBEDDING_DIMS, dtype=np.float32)
    vector /= np.linalg.norm(vector)
    body = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": vector}],
        "model": model,
        "usage": {"prompt_tokens": 24, "total_tokens": 24},
    }
    return _response("200 OK", b"application/json", orjson.dumps(body, option=_NUMPY))


_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def _event(model: str, choices: list[dict[str, Any]], usage: Any = None) -> bytes:
    chunk = {
        "id": "chatcmpl-bench0000000000000000000000",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "system_fingerprint": "fp_bench",
        "choices": choices,
    }
    if usage is not None:
        chunk["usage"] = usage
    data = b"data: " + orjson.dumps(chunk) + b"\n\n"
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"  # one HTTP chunk per event


@functools.lru_cache(maxsize=256)
def stream_events(model: str, chunks: int, include_usage: bool) -> tuple[bytes, ...]:
    """The HTTP chunks of a stream: ``chunks`` content events; the last one also carries
    the usage chunk (if asked), ``[DONE]`` and the terminating zero-length chunk."""
    events = []
    for index in range(chunks):
        delta: dict[str, Any] = {"content": "tok "}
        if index == 0:
            delta = {"role": "assistant", "content": "tok ", "refusal": None}
        finish = "stop" if index == chunks - 1 else None
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        events.append(_event(model, [choice]))
    tail = _event(model, [], _usage(chunks)) if include_usage else b""
    done = b"data: [DONE]\n\n"
    tail += f"{len(done):x}\r\n".encode() + done + b"\r\n" + _LAST_CHUNK
    events[-1] += tail
    return tuple(events)


def _anthropic_event(data: dict[str, Any]) -> bytes:
    event = b"event: " + data["type"].encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
    return f"{len(event):x}\r\n".encode() + event + b"\r\n"  # one HTTP chunk per event


_MESSAGE_ID = "msg_bench00000000000000000000"
_ANTHROPIC_USAGE = {"input_tokens": 24, "cache_creation_input_tokens": 0}


@functools.lru_cache(maxsize=256)
def message(model: str, chunks: int) -> bytes:
    """A whole Anthropic ``message``, HTTP head included."""
    body = {
        "id": _MESSAGE_ID,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "tok " * chunks}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {**_ANTHROPIC_USAGE, "cache_read_input_tokens": 0, "output_tokens": chunks},
    }
    return _response("200 OK", b"application/json", orjson.dumps(body))


@functools.lru_cache(maxsize=256)
def message_events(model: str, chunks: int) -> tuple[bytes, ...]:
    """The HTTP chunks of an Anthropic stream, paced as ``stream_events``: the first
    carries ``message_start`` and ``content_block_start``, then one ``content_block_delta``
    each; the last delta also carries the block's stop, ``message_delta``, ``message_stop``
    and the terminating zero-length chunk."""
    start = {
        "id": _MESSAGE_ID,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**_ANTHROPIC_USAGE, "cache_read_input_tokens": 0, "output_tokens": 1},
    }
    head = _anthropic_event({"type": "message_start", "message": start})
    head += _anthropic_event(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    )
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta"}}
    events = [_anthropic_event({**delta, "delta": {**delta["delta"], "text": "tok "}})] * chunks
    events[0] = head + events[0]
    events[-1] += (
        _anthropic_event({"type": "content_block_stop", "index": 0})
        + _anthropic_event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": chunks},
            }
        )
        + _anthropic_event({"type": "message_stop"})
        + _LAST_CHUNK
    )
    return tuple(events)


class UpstreamProtocol(asyncio.Protocol):
    """One client connection: parse requests, answer from the pre-serialised bodies."""

    def __init__(self, tally: dict[str, int]) -> None:
        self.tally = tally  # shared by every connection: OTLP exports received
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.streaming: asyncio.TimerHandle | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self.streaming is not None:
            self.streaming.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._serve()

    def _serve(self) -> None:
        while self.transport is not None and not self.busy:
            end = self.buffer.find(b"\r\n\r\n")
            if end == -1:
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            method, path, _ = head[0].split(" ", 2)
            self._answer(method, path, body)

    def _answer(self, method: str, path: str, body: bytes) -> None:
        assert self.transport is not None
        if method == "GET" and path == "/health":
            self.transport.write(_HEALTH)
            return
        if path == "/v1/traces":
            if method == "POST":
                self.tally["traces"] += 1
                self.transport.write(_TRACES)
            else:
                count = str(self.tally["traces"]).encode()
                self.transport.write(_response("200 OK", b"text/plain", count))
            return
        if method == "POST" and path.endswith("/embeddings"):
            request = orjson.loads(body)
            text = orjson.dumps(request.get("input"))
            self.transport.write(embedding(request.get("model", "bench-embed"), text))
            return
        if method == "POST" and path.endswith("/v1/messages"):
            self._message(orjson.loads(body))
            return
        if method != "POST" or not path.endswith("/chat/completions"):
            self.transport.write(_NOT_FOUND)
            return
        request = orjson.loads(body)
        model = request.get("model", "bench-model")
        chunks = max(1, int(request.get("max_tokens") or 16))
        if not request.get("stream"):
            self.transport.write(completion(model, chunks))
            return
        usage = bool((request.get("stream_options") or {}).get("include_usage"))
        delay = float((request.get("metadata") or {}).get("chunk_delay_ms", 0)) / 1000
        self._stream(stream_events(model, chunks, usage), delay)

    def _message(self, request: dict[str, Any]) -> None:
        """Anthropic's Messages API: a whole message, or its stream."""
        assert self.transport is not None
        model = request.get("model", "bench-model")
        chunks = max(1, int(request.get("max_tokens") or 16))
        if not request.get("stream"):
            self.transport.write(message(model, chunks))
            return
        user = str((request.get("metadata") or {}).get("user_id") or "")
        delay = float(user.removeprefix("pace-")) / 1000 if user.startswith("pace-") else 0.0
        self._stream(message_events(model, chunks), delay)

    def _stream(self, events: tuple[bytes, ...], delay: float) -> None:
        assert self.transport is not None
        self.transport.write(_STREAM_HEAD + events[0])
        if delay <= 0:
            for event in events[1:]:
                self.transport.write(event)
            return
        self.busy = True
        self._next(events, 1, self.loop.time(), delay)

    def _next(self, events: tuple[bytes, ...], index: int, start: float, delay: float) -> None:
        if index < len(events):
            self.streaming = self.loop.call_at(
                start + index * delay, self._send, events, index, start, delay
            )
            return
        self.streaming = None
        self.busy = False
        self._serve()

    def _send(self, events: tuple[bytes, ...], index: int, start: float, delay: float) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(events[index])
        self._next(events, index + 1, start, delay)


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    tally = {"traces": 0}
    server = await loop.create_server(
        functools.partial(UpstreamProtocol, tally), host, port, backlog=4096
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
