"""The simple prompt APIs' answers, rewritten on their way to the client.

The itinerary of ``/v1/chat/completions`` writes OpenAI's bytes (relayed, translated,
replayed from the cache or followed from a coalesced leader) to the request's payload
writer. For ``/api/chat``, ``/api/chat/stream`` and ``/gateway/query`` that writer is
wrapped by ``SimpleWriter``, which rewrites a 200 answer into the simple shapes
(``translate/simple.py``) and lets every other response (errors keep OpenAI's shape)
through unchanged. So every path of the itinerary serves these endpoints as it
serves the OpenAI surface, without knowing them.

aiohttp takes a response's writer from the request (``_payload_writer``) when the
response is prepared; ``install`` swaps it before the itinerary runs.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from multidict import CIMultiDict

from llmgw.core import RequestContext
from llmgw.translate.simple import Shape, SimpleStream, simple_answer


def install(request: web.Request, ctx: RequestContext, shape: Shape) -> None:
    request._payload_writer = SimpleWriter(request._payload_writer, ctx, shape)


def meta(ctx: RequestContext) -> dict[str, Any]:
    """What the gateway knows of the request, for the simple answers."""
    usage = None
    if ctx.prompt_tokens is not None and ctx.completion_tokens is not None:
        usage = {
            "prompt_tokens": ctx.prompt_tokens,
            "completion_tokens": ctx.completion_tokens,
            "total_tokens": ctx.prompt_tokens + ctx.completion_tokens,
        }
    return {
        "provider": ctx.provider,
        "cached": ctx.cache == "HIT",
        "usage": usage,
        "latency_ms": round((time.perf_counter() - ctx.started) * 1000, 2),
    }


class SimpleWriter(AbstractStreamWriter):
    """A payload writer that rewrites a 200 JSON or SSE answer (see the module)."""

    def __init__(self, inner: AbstractStreamWriter, ctx: RequestContext, shape: Shape) -> None:
        self._inner = inner
        self._ctx = ctx
        self._shape = shape
        self._mode = "pass"  # "pass" | "json" (held to the end) | "sse"
        self._held: tuple[str, CIMultiDict[str]] | None = None
        self._body = bytearray()
        self._stream: SimpleStream | None = None

    @property
    def length(self) -> int | None:
        return self._inner.length

    @length.setter
    def length(self, value: int | None) -> None:
        self._inner.length = value

    @property
    def output_size(self) -> int:  # type: ignore[override]
        return self._inner.output_size

    @property
    def buffer_size(self) -> int:  # type: ignore[override]
        return self._inner.buffer_size

    @property
    def transport(self) -> Any:
        return self._inner.transport

    def __getattr__(self, name: str) -> Any:  # set_eof, protocol, chunked, ...
        return getattr(self._inner, name)

    async def write_headers(self, status_line: str, headers: CIMultiDict[str]) -> None:
        parts = status_line.split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        kind = headers.get("Content-Type", "")
        if status == 200 and kind.startswith("text/event-stream"):
            self._mode = "sse"
            self._stream = SimpleStream(lambda: meta(self._ctx))
            headers.popall("Content-Length", None)
            if not getattr(self._inner, "chunked", False):
                self._inner.length = None
                self._inner.enable_chunking()
                headers["Transfer-Encoding"] = "chunked"
        elif status == 200 and kind.startswith("application/json"):
            self._mode = "json"
            self._held = (status_line, headers)
            return
        await self._inner.write_headers(status_line, headers)

    def send_headers(self) -> None:
        if self._mode != "json":
            self._inner.send_headers()

    async def write(self, chunk: bytes | bytearray | memoryview) -> None:
        if self._mode == "json":
            self._body += chunk
        elif self._stream is not None:
            out = self._stream.feed(bytes(chunk))
            if out:
                await self._inner.write(out)
        else:
            await self._inner.write(chunk)

    async def write_eof(self, chunk: bytes = b"") -> None:
        if self._mode == "json" and self._held is not None:
            self._body += chunk
            body = simple_answer(bytes(self._body), self._shape, meta(self._ctx))
            status_line, headers = self._held
            self._held = None
            if not getattr(self._inner, "chunked", False):
                headers["Content-Length"] = str(len(body))
                self._inner.length = len(body)
            await self._inner.write_headers(status_line, headers)
            await self._inner.write_eof(body)
        elif self._stream is not None:
            await self._inner.write_eof(self._stream.feed(chunk) + self._stream.finish())
        else:
            await self._inner.write_eof(chunk)

    async def drain(self) -> None:
        await self._inner.drain()

    def enable_compression(self, encoding: str = "deflate", strategy: int | None = None) -> None:
        self._inner.enable_compression(encoding, strategy)

    def enable_chunking(self) -> None:
        self._inner.enable_chunking()
