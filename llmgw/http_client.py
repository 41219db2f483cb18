"""The HTTP/1.1 client that carries every provider call.

A pool of keep-alive connections per origin; each connection is an asyncio protocol
whose response is parsed by httptools (the C parser uvicorn uses), and whose body is
handed to the reader as it arrives: no stream reader, no per-chunk timer, no copy.
aiohttp's ``ClientSession`` does far more per request (cookie jar, tracing signals,
redirect and proxy handling, auto-decompression, a timer per read), and that work was
most of the difference between a call relayed by llmgw and one answered from memory.

Only what a provider call needs: requests with a bytes body, ``http`` and ``https``,
``Content-Length``, chunked and until-close bodies, no redirects, no proxies, no
compression (no ``Accept-Encoding`` is sent, so a provider answers in identity).
Errors are ``HttpError`` subclasses (``ReadTimeout`` is also a ``TimeoutError``).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

import httptools

from .http_response import (
    HIGH_WATER,
    BadResponse,
    BodyTooLarge,
    ConnectError,
    Disconnected,
    HeadTimeout,
    HttpError,
    InvalidRequest,
    NoResponse,
    ReadTimeout,
    Response,
)

__all__ = [
    "HIGH_WATER",
    "BadResponse",
    "BodyTooLarge",
    "ConnectError",
    "Disconnected",
    "HeadTimeout",
    "HttpError",
    "InvalidRequest",
    "NoResponse",
    "Pool",
    "ReadTimeout",
    "Response",
]

KEEPALIVE = 30.0  # seconds an idle connection is kept
DNS_TTL = 300.0  # seconds a resolved address is reused for new connections

Origin = tuple[str, str, int]  # scheme, host, port


class _Target:
    __slots__ = ("head", "origin")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConnectError(f"not an http(s) URL: {parts.scheme}://")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self.origin: Origin = (parts.scheme, parts.hostname, port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rpartition("@")[2]
        self.head = f"{target} HTTP/1.1\r\nHost: {host}\r\n"


class Connection(asyncio.Protocol):
    """One keep-alive connection; while a request is out, its response and the parser
    (made per response, calling the response back) are set."""

    __slots__ = ("closed", "idle_since", "origin", "parser", "pool", "response", "transport")

    def __init__(self, pool: Pool, origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set at once
        self.response: Response | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.closed = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.pool.connections.add(self)

    def data_received(self, data: bytes) -> None:
        response, parser = self.response, self.parser
        if response is None or parser is None:  # bytes nobody asked for: not sane
            self.close()
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserError:
            failure = BadResponse if response.status else NoResponse
            response.fail(failure("the provider's response is not valid HTTP/1.1"))

    def eof_received(self) -> bool:
        return False  # close; connection_lost decides what the response was

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.connections.discard(self)
        if self.response is not None:
            self.response.connection_lost()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()


class Pool:
    """Keep-alive connections per origin, opened on demand, closed after ``KEEPALIVE``
    idle seconds and at ``close()``. One per process."""

    def __init__(
        self, *, user_agent: str, max_body: int, tls: ssl.SSLContext | None = None
    ) -> None:
        """``tls``: how ``https`` providers are verified (default: the system's CAs)."""
        self.loop = asyncio.get_running_loop()
        self.max_body = max_body
        self._agent = f"User-Agent: {user_agent}\r\n"
        self.connections: set[Connection] = set()
        self._idle: dict[Origin, list[Connection]] = {}
        self._targets: dict[str, _Target] = {}
        self._addresses: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._tls = tls
        self._sweeper: asyncio.TimerHandle | None = None

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        head_timeout: float,
        read_timeout: float,
    ) -> Response:
        """Send one request and wait for the response's head: connecting (when no idle
        connection is at hand) and the head together within ``head_timeout``, or
        ``HeadTimeout``. The body follows through the response, each silence in it
        shorter than ``read_timeout``, or ``ReadTimeout``."""
        target = self._targets.get(url)
        if target is None:
            target = _Target(url)
            if len(self._targets) >= 4096:
                self._targets.clear()
            self._targets[url] = target
        lines = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
        if lines.count("\n") != len(headers) or lines.count("\r") != len(headers):
            raise InvalidRequest("a header name or value holds a line break")
        if "User-Agent" not in headers and "user-agent" not in headers:
            lines += self._agent
        head = f"{method} {target.head}{lines}Content-Length: {len(body)}\r\n\r\n"
        deadline = self.loop.time() + head_timeout
        conn = self._idle_connection(target.origin)
        if conn is None:
            try:
                async with asyncio.timeout_at(deadline):
                    conn = await self._connect(target.origin)
            except TimeoutError:
                raise HeadTimeout("no connection within the head timeout") from None
        response = conn.response = Response(conn, self, read_timeout)
        conn.parser = httptools.HttpResponseParser(response)
        conn.transport.write(head.encode() + body)
        # a timer, not asyncio.timeout(): that one costs more than the rest of this call
        timer = self.loop.call_at(deadline, response.head_late)
        try:
            await response.head_ready
        except BaseException:
            conn.close()
            raise
        finally:
            timer.cancel()
        response.start()
        return response

    def release(self, conn: Connection) -> None:
        conn.idle_since = self.loop.time()
        self._idle.setdefault(conn.origin, []).append(conn)
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(KEEPALIVE, self._sweep)

    def _idle_connection(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.closed and not conn.transport.is_closing():
                return conn
        return None

    def _sweep(self) -> None:
        """Close connections idle for ``KEEPALIVE`` seconds; runs while any are idle."""
        self._sweeper = None
        oldest = self.loop.time() - KEEPALIVE
        for origin, idle in list(self._idle.items()):
            kept = [c for c in idle if c.idle_since > oldest and not c.closed]
            for conn in idle:
                if conn.idle_since <= oldest:
                    conn.close()
            if kept:
                self._idle[origin] = kept
            else:
                del self._idle[origin]
        if self._idle:
            self._sweeper = self.loop.call_later(KEEPALIVE / 2, self._sweep)

    async def _connect(self, origin: Origin) -> Connection:
        scheme, host, port = origin
        tls = self._tls_context() if scheme == "https" else None
        error: OSError = OSError("no address")
        try:
            addresses = await self._resolve(host, port)
        except OSError as exc:
            raise ConnectError(f"could not resolve the host ({type(exc).__name__})") from None
        for address in addresses:  # in the resolver's order, as a browser would
            try:
                _, conn = await self.loop.create_connection(
                    lambda: Connection(self, origin),
                    address,
                    port,
                    ssl=tls,
                    server_hostname=host if tls else None,
                )
                return conn
            except OSError as exc:
                error = exc
        raise ConnectError(f"could not connect ({type(error).__name__})")

    async def _resolve(self, host: str, port: int) -> list[str]:
        now = self.loop.time()
        known = self._addresses.get((host, port))
        if known is not None and known[0] > now:
            return known[1]
        infos = await self.loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if len(self._addresses) >= 1024:
            self._addresses.clear()
        self._addresses[(host, port)] = (now + DNS_TTL, addresses)
        return addresses

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._idle.clear()
        for conn in list(self.connections):
            conn.close()
        await asyncio.sleep(0)  # let the transports finish closing
