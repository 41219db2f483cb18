"""The HTTP/1.1 client that carries every provider call.

A pool of keep-alive connections per origin; each connection is an asyncio protocol
whose response is parsed by httptools (the C parser uvicorn uses), and whose body is
handed to the reader as it arrives: no stream reader, no per-chunk timer, no copy.
aiohttp's ``ClientSession`` does far more per request (cookie jar, tracing signals,
redirect handling, a timer per read), and that work was most of the difference
between a call relayed by llmgw and one answered from memory.

Only what a provider call needs: requests with a bytes body, or a ``Streamed`` one of
known length (an upload, written as it is read, as fast as the socket takes it: the
connection pauses the writer while the transport's buffer is full), ``http`` and ``https``,
``Content-Length``, chunked and until-close bodies, no redirects. Beside it:
``connect`` (routes, resolution, Happy Eyeballs), ``proxy`` (HTTP proxies,
``CONNECT``), ``tls`` (CA files, mTLS), ``response`` (the response) and
``errors`` (the error tree; ``ReadTimeout`` is also a ``TimeoutError``).

``Accept-Encoding: identity`` is sent (without it any coding would be acceptable,
RFC 9110 §12.5.3); a server that compresses anyway is decoded (``response``).
A keep-alive connection the server closed as it was reused (uvicorn closes idle ones
after 5 s, others after their own keep-alive) is retried once on a new connection,
and only when not a byte of the response had arrived: the server closed it before
reading the request. httpx and urllib3 retry such a stale connection the same way.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping

import httptools

from llmgw.core import Streamed
from llmgw.http import proxy as http_proxy
from llmgw.http import tls as http_tls
from llmgw.http.connect import Resolver, Route, Target, happy_eyeballs
from llmgw.http.errors import (
    BadResponse,
    BodyTooLarge,
    ConnectError,
    ConnectRefused,
    ConnectReset,
    ConnectTimeout,
    Disconnected,
    DnsError,
    HeadTimeout,
    HeadTooLarge,
    HttpError,
    InvalidRequest,
    NoResponse,
    ProxyError,
    ReadTimeout,
    TlsError,
)
from llmgw.http.response import HIGH_WATER, MAX_HEAD, Response

__all__ = [
    "HIGH_WATER",
    "MAX_HEAD",
    "BadResponse",
    "BodyTooLarge",
    "ConnectError",
    "ConnectRefused",
    "ConnectReset",
    "ConnectTimeout",
    "Disconnected",
    "DnsError",
    "HeadTimeout",
    "HeadTooLarge",
    "Heads",
    "HttpError",
    "InvalidRequest",
    "NoResponse",
    "Pool",
    "ProxyError",
    "ReadTimeout",
    "Response",
    "Route",
    "TlsError",
]

KEEPALIVE = 30.0  # seconds an idle connection is kept
ACCEPT = "Accept-Encoding: identity\r\n"


class Connection(asyncio.Protocol):
    """One keep-alive connection; while a request is out, its response and the parser
    (made per response, calling the response back) are set."""

    __slots__ = (
        "closed",
        "idle_since",
        "origin",
        "parser",
        "pool",
        "provider",
        "response",
        "transport",
        "writable",
    )

    def __init__(self, pool: Pool, target: Target) -> None:
        self.pool = pool
        self.origin: tuple[object, ...] = target.key
        self.provider = target.provider
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set at once
        self.response: Response | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.closed = False
        self.idle_since = 0.0
        self.writable: asyncio.Future[None] | None = None  # set while writing is paused

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.pool.connections.add(self)

    def data_received(self, data: bytes) -> None:
        response, parser = self.response, self.parser
        if response is None or parser is None:  # bytes nobody asked for: not sane
            self.close()
            return
        head = not response.status
        if head:
            response.head_bytes += len(data)
        try:
            parser.feed_data(data)
        except httptools.HttpParserError:
            failure = BadResponse if response.status else NoResponse
            response.fail(failure("the provider's response is not valid HTTP/1.1"))
            return
        if head and not response.status and response.head_bytes > MAX_HEAD:
            response.fail(HeadTooLarge(f"the response's head is over {MAX_HEAD} bytes"))
        elif response.push is not None:
            response.flush()

    def pause_writing(self) -> None:
        if self.writable is None:
            self.writable = self.pool.loop.create_future()

    def resume_writing(self) -> None:
        writable, self.writable = self.writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    def eof_received(self) -> bool:
        return False  # close; connection_lost decides what the response was

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.resume_writing()
        self.pool.connections.discard(self)
        if self.response is not None:
            self.response.connection_lost(exc)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()


class Heads:
    """One sender's last header lines (a provider's transport: its requests mostly carry
    the same headers), rendered and checked again whenever the headers differ; headers
    that fail the check are never kept."""

    __slots__ = ("_key", "_lines")

    def __init__(self) -> None:
        self._key: tuple[tuple[str, str], ...] | None = None
        self._lines = ""

    def lines(self, headers: Mapping[str, str], pool: Pool) -> str:
        key = tuple(headers.items())
        if key != self._key:
            self._lines = pool.header_lines(headers)  # raises before anything is kept
            self._key = key
        return self._lines


class Pool:
    """Keep-alive connections per origin (and provider route), opened on demand,
    closed after ``KEEPALIVE`` idle seconds and at ``close()``. One per process."""

    def __init__(
        self, *, user_agent: str, max_body: int, tls: ssl.SSLContext | None = None
    ) -> None:
        """``tls``: how ``https`` providers are verified (default: the system's CAs)
        when their route brings no context of its own."""
        self.loop = asyncio.get_running_loop()
        self.max_body = max_body
        self._agent = f"User-Agent: {user_agent}\r\n"
        self.connections: set[Connection] = set()
        self.created: dict[str, int] = {}  # connections opened, per provider
        self.route = Route()  # for calls without one: the environment's proxies
        self.resolver = Resolver(self.loop)
        self._idle: dict[tuple[object, ...], list[Connection]] = {}
        self._tls = tls
        self._sweeper: asyncio.TimerHandle | None = None

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | Streamed,
        head_timeout: float,
        read_timeout: float,
        route: Route | None = None,
        *,
        connect_timeout: float | None = None,
        heads: Heads | None = None,
    ) -> Response:
        """Send one request and wait for the response's head: connecting (when no idle
        connection is at hand) and the head together within ``head_timeout``, or
        ``HeadTimeout``; connecting alone within ``connect_timeout`` too, or
        ``ConnectTimeout``. The body follows through the response, each silence in it
        shorter than ``read_timeout``, or ``ReadTimeout``."""
        target = (route or self.route).target(url)
        lines = self.header_lines(headers) if heads is None else heads.lines(headers, self)
        length = len(body) if isinstance(body, bytes) else body.length
        wire = f"{method} {target.head}{lines}{ACCEPT}Content-Length: {length}\r\n\r\n"
        data = wire.encode() + body if isinstance(body, bytes) else wire.encode()
        now = self.loop.time()
        deadline = now + head_timeout
        if connect_timeout is not None and connect_timeout < head_timeout:
            connected_by = now + connect_timeout
        else:
            connected_by = deadline
        conn = self._idle_connection(target.key)
        reused = conn is not None
        while True:  # twice at most: a reused connection found closed is replaced once
            if conn is None:
                try:
                    async with asyncio.timeout_at(connected_by):
                        conn = await self._connect(target)
                except TimeoutError:
                    raise ConnectTimeout("no connection within the connect timeout") from None
            response = conn.response = Response(conn, self, read_timeout)
            conn.parser = httptools.HttpResponseParser(response)
            conn.transport.write(data)
            # a timer, not asyncio.timeout(): that one costs more than the rest of this call
            timer = self.loop.call_at(deadline, response.head_late)
            try:
                if not isinstance(body, bytes):
                    await _send(conn, response, body)
                await response.head_ready
            except BaseException as exc:
                conn.close()
                conn.response = conn.parser = None
                if reused and isinstance(exc, NoResponse) and not response.head_bytes:
                    reused, conn = False, None
                    continue
                raise
            finally:
                timer.cancel()
            response.start()
            return response

    def header_lines(self, headers: Mapping[str, str]) -> str:
        """The request's header lines, the User-Agent added unless it names its own;
        ``InvalidRequest`` when a name or value holds a line break."""
        lines = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
        if lines.count("\n") != len(headers) or lines.count("\r") != len(headers):
            raise InvalidRequest("a header name or value holds a line break")
        if "User-Agent" not in headers and "user-agent" not in headers:
            lines += self._agent
        return lines

    def release(self, conn: Connection) -> None:
        conn.idle_since = self.loop.time()
        self._idle.setdefault(conn.origin, []).append(conn)
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(KEEPALIVE, self._sweep)

    def figures(self) -> dict[str, tuple[int, int, int]]:
        """Per provider: connections open, idle among them, and opened in all."""
        seen: dict[str, list[int]] = {name: [0, 0, count] for name, count in self.created.items()}
        for conn in self.connections:
            seen.setdefault(conn.provider, [0, 0, 0])[0] += 1
        for idle in self._idle.values():
            for conn in idle:
                if not conn.closed:
                    seen.setdefault(conn.provider, [0, 0, 0])[1] += 1
        return {name: (o, i, c) for name, (o, i, c) in seen.items()}

    def _idle_connection(self, key: tuple[object, ...]) -> Connection | None:
        idle = self._idle.get(key)
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

    async def _connect(self, target: Target) -> Connection:
        """A new connection: to the proxy (tunnelled for ``https``) or the origin,
        TLS for ``https``; each failure says which step failed (``errors``)."""
        proxy = target.proxy
        host, port = (proxy.host, proxy.port) if proxy else (target.host, target.port)
        what = "the proxy" if proxy else "the provider"
        addresses = await self.resolver.resolve(host, port)
        try:
            sock = await happy_eyeballs(self.loop, addresses, port, what)
        except HttpError:
            self.resolver.forget(host, port)
            raise
        try:
            if proxy is not None and target.tunnel:
                where = http_proxy.authority(target.host, target.port)
                await http_proxy.tunnel(self.loop, sock, where, proxy)
            tls = (target.tls or self._tls_context()) if target.scheme == "https" else None
            _, conn = await self.loop.create_connection(
                lambda: Connection(self, target),
                sock=sock,
                ssl=tls,
                server_hostname=target.host if tls else None,
            )
        except BaseException as exc:
            sock.close()
            failure = _connect_failure(exc, what)
            if failure is exc:
                raise
            raise failure from None
        self.created[target.provider] = self.created.get(target.provider, 0) + 1
        return conn

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


async def _send(conn: Connection, response: Response, body: Streamed) -> None:
    """Write a streamed body, waiting whenever the transport's buffer is full; stops
    early when the response failed (head timeout) or came first (a provider's early 413)."""
    head = response.head_ready
    async for chunk in body.chunks():
        if conn.closed or head.done():
            return
        conn.transport.write(chunk)
        writable = conn.writable
        if writable is not None:
            await asyncio.wait((writable, head), return_when=asyncio.FIRST_COMPLETED)


def _connect_failure(exc: BaseException, what: str) -> BaseException:
    """A failure after the TCP connection (tunnel, TLS) in the client's own terms."""
    if isinstance(exc, HttpError | asyncio.CancelledError) or not isinstance(exc, Exception):
        return exc
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return http_tls.failure(exc)
    if isinstance(exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
        return ConnectReset(f"{what} reset the connection while it was set up")
    if isinstance(exc, OSError):
        return ConnectError(f"could not connect to {what} ({exc.strerror or type(exc).__name__})")
    return exc
