"""The listening socket's protocol factory, bounded by ``server.max_connections``.

Each accepted connection gets aiohttp's request handler, counted from the moment it
is made until the connection is lost. Past the bound a new connection is answered
``503 overloaded`` at once, without reading anything it sent, and closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, cast

from aiohttp import web

from llmgw.errors import Overloaded


class ConnectionCap:
    """A protocol factory for ``loop.create_server``; ``limit`` 0 is unbounded."""

    def __init__(self, server: web.Server, limit: int, options: Mapping[str, Any]) -> None:
        self.limit = limit
        self.open = 0
        self.refused = 0
        self._server = server
        self._options = dict(options)
        body = Overloaded("The gateway has too many open connections; retry shortly").openai_body()
        self._busy = (
            b"HTTP/1.1 503 Service Unavailable\r\n"
            b"Content-Type: application/json\r\n"
            b"Retry-After: 1\r\n"
            b"Connection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )

    def __call__(self) -> asyncio.BaseProtocol:
        if self.limit and self.open >= self.limit:
            self.refused += 1
            return _Refused(self._busy)
        self.open += 1
        return _CountedHandler(self, self._server, loop=asyncio.get_running_loop(), **self._options)

    def closed(self) -> None:
        self.open -= 1


class _CountedHandler(web.RequestHandler):
    __slots__ = ("_cap",)

    def __init__(self, cap: ConnectionCap, server: web.Server, **options: Any) -> None:
        super().__init__(server, **options)
        self._cap: ConnectionCap | None = cap

    def connection_lost(self, exc: BaseException | None) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.closed()
        super().connection_lost(exc)


class _Refused(asyncio.Protocol):
    def __init__(self, answer: bytes) -> None:
        self._answer = answer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        writer = cast(asyncio.WriteTransport, transport)
        writer.write(self._answer)
        writer.close()
