"""Fake providers that speak the real wire formats, scripted per test.

A ``FakeOpenAI`` is an aiohttp app served on 127.0.0.1 by the test: it records
every request it sees and answers with the next scripted behaviour (or echoes).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import BodyPartReader, web

Behaviour = Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes
    peer: object = None  # the gateway's end of the connection: same peer, same connection


def chat_completion(content: str = "Hello!", model: str = "gpt-4o-mini") -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake123",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    }


def chat_chunks(
    words: Iterable[str] = ("Hel", "lo", "!"), model: str = "gpt-4o-mini", usage: bool = True
) -> list[bytes]:
    """A chat stream as OpenAI sends it: one event per chunk, usage, then [DONE]."""

    def event(delta: dict[str, Any], finish: str | None, **extra: Any) -> bytes:
        chunk = {
            "id": "chatcmpl-fake123",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            **extra,
        }
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    events = [event({"role": "assistant", "content": ""}, None)]
    events += [event({"content": w}, None) for w in words]
    events.append(event({}, "stop"))
    if usage:
        usage_chunk = {
            "id": "chatcmpl-fake123",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": model,
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
        }
        events.append(b"data: " + orjson.dumps(usage_chunk) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


def openai_error(status: int, message: str, kind: str = "invalid_request_error") -> bytes:
    return orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": None}})


# Behaviours -------------------------------------------------------------------------


def reply_json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Behaviour:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)

    async def behave(request: web.Request, _: dict[str, Any]) -> web.StreamResponse:
        return web.Response(
            body=body, status=status, content_type="application/json", headers=headers
        )

    return behave


def reply_error(status: int, message: str = "fake failure", **headers: str) -> Behaviour:
    return reply_json(openai_error(status, message), status=status, headers=headers or None)


def reply_stream(
    chunks: Iterable[bytes],
    *,
    delay: float = 0.0,
    gate: asyncio.Event | None = None,
    gate_after: int = 1,
) -> Behaviour:
    """Send ``chunks`` as separate writes; wait on ``gate`` after ``gate_after`` of them."""
    chunks = list(chunks)

    async def behave(request: web.Request, _: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index, chunk in enumerate(chunks):
            if gate is not None and index == gate_after:
                await gate.wait()
            if delay and index:
                await asyncio.sleep(delay)
            await response.write(chunk)
        await response.write_eof()
        return response

    return behave


def stall_after(fake: FakeOpenAI, first: bytes) -> asyncio.Event:
    """``fake`` answers every stream with its status, headers and ``first``, then says
    nothing until the returned event is set (a hedge's racer that began and stalled)."""
    gate = asyncio.Event()
    fake.default = reply_stream([b": hi\n\n", first], gate=gate)
    return gate


def reply_stream_as_openai(
    words: Iterable[str] = ("Hel", "lo", "!"), *, gate: asyncio.Event | None = None
) -> Behaviour:
    """A chat stream as OpenAI answers it: the usage chunk (``"choices": []``) only when
    the request's ``stream_options.include_usage`` asked for it."""

    async def behave(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        options = body.get("stream_options") or {}
        chunks = chat_chunks(words, usage=options.get("include_usage") is True)
        return await reply_stream(chunks, gate=gate)(request, body)

    return behave


def hang(seconds: float = 30.0) -> Behaviour:
    async def behave(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.json_response(chat_completion())

    return behave


def drop_connection() -> Behaviour:
    """Close the socket without answering: a reset before the headers."""

    async def behave(request: web.Request, _: dict[str, Any]) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        await asyncio.sleep(0.1)
        return web.Response()

    return behave


class FakeOpenAI:
    """An OpenAI-compatible upstream: records requests, answers as scripted."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.script: deque[Behaviour] = deque()
        self.default: Behaviour = self.echo
        self.stream_closed = asyncio.Event()  # a client of a slow stream went away
        self.url = ""

    def then(self, *behaviours: Behaviour) -> FakeOpenAI:
        self.script.extend(behaviours)
        return self

    def app(self) -> web.Application:
        app = web.Application()
        for path in (
            "/v1/chat/completions",
            "/v1/completions",
            "/v1/embeddings",
            "/v1/responses",
            "/v1/moderations",
            "/v1/images/generations",
            "/v1/audio/speech",
        ):
            app.router.add_post(path, self._handle)
        for path in ("/v1/audio/transcriptions", "/v1/audio/translations"):
            app.router.add_post(path, self._handle_form)
        return app

    async def _handle_form(self, request: web.Request) -> web.StreamResponse:
        """A multipart upload, parsed as OpenAI would: text fields by name, and the
        file's bytes, name and type under ``file``, ``filename``, ``file_type``."""
        body: dict[str, Any] = {}
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            assert isinstance(part, BodyPartReader)
            if part.filename is not None:
                body[part.name or ""] = await part.read()
                body["filename"] = part.filename
                body["file_type"] = part.headers.get("Content-Type")
            else:
                body[part.name or ""] = await part.text()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.seen.append(Seen(request.path, dict(request.headers), body, b"", peer))
        if self.script:
            return await self.script.popleft()(request, body)
        return web.json_response({"text": f"heard {len(body.get('file', b''))} bytes"})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = orjson.loads(raw)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.seen.append(Seen(request.path, dict(request.headers), body, raw, peer))
        behaviour = self.script.popleft() if self.script else self.default
        return await behaviour(request, body)

    async def echo(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        content = f"echo from {body.get('model')}"
        if body.get("stream"):
            return await reply_stream(chat_chunks([content], model=body["model"]))(request, body)
        return web.json_response(chat_completion(content, model=body["model"]))

    def slow_stream(self, chunks: int = 200, delay: float = 0.02) -> Behaviour:
        """Stream for a long time; note when the reader goes away."""

        async def behave(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            try:
                for index in range(chunks):
                    await response.write(chat_chunks([f"w{index} "], usage=False)[1])
                    await asyncio.sleep(delay)
            except (ConnectionError, asyncio.CancelledError):
                self.stream_closed.set()
                raise
            await response.write(b"data: [DONE]\n\n")
            return response

        return behave


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_for(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def webhook_receiver(aiohttp_server: Any) -> tuple[str, list[dict[str, Any]]]:
    """A webhook endpoint on 127.0.0.1 (pytest-aiohttp's ``aiohttp_server``): its URL, and
    the JSON bodies it has received, in order (each answered 204)."""
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    return str((await aiohttp_server(app)).make_url("/hook")), received
