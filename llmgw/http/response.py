"""A provider's response as the HTTP/1.1 client hands it over.

``Response`` is the httptools parser's callback target while the body arrives, and the
reader's side: ``read()`` for the whole body, ``chunks()`` for pieces as they come.
The connection and its pool (``client``) feed it and take the connection back;
what it needs of them is written down as ``Carrier`` and ``Owner``, so this module
imports neither (the errors are ``errors``).

The head is bounded: ``MAX_HEAD`` bytes received without the head's end fail the
response with ``HeadTooLarge`` (aiohttp bounds each line at 8190 bytes and the
fields' count; one bound on the whole is what matters for memory).

A body the server compressed although ``Accept-Encoding: identity`` was asked for
(``gzip``, ``x-gzip``, ``deflate``) is decoded as it arrives with ``zlib``, so that
what is relayed is what the adapter parses; the decoded size counts against
``max_body`` whether read whole or in chunks (a small gzip body can decode to
gigabytes), and a cut or corrupt stream is ``BadResponse``. Any other coding (``br``,
``zstd``) fails the attempt with ``BadResponse``: nothing llmgw could relay or parse.
aiohttp decodes by default too, httpx does as well; both leave a decoded stream
unbounded.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import zlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from multidict import CIMultiDict

from llmgw.http import tls as http_tls
from llmgw.http.errors import (
    BadResponse,
    BodyTooLarge,
    ConnectReset,
    Disconnected,
    HeadTimeout,
    HttpError,
    NoResponse,
    ReadTimeout,
)

HIGH_WATER = 256 * 1024  # bytes a slow reader may leave queued before reading pauses
MAX_HEAD = 64 * 1024  # bytes of a response's head (status line and fields)
_CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class Carrier(Protocol):
    """The connection a response arrives on (``client.Connection``)."""

    transport: asyncio.Transport
    closed: bool
    response: Any
    parser: Any

    def close(self) -> None: ...


class Owner(Protocol):
    """The pool a connection goes back to (``client.Pool``)."""

    loop: asyncio.AbstractEventLoop
    max_body: int

    def release(self, conn: Any) -> None: ...


class Response:
    """One response: ``status`` and ``headers`` once they arrived, then the body by
    ``read()`` (whole) or ``chunks()`` (as it arrives); ``close()`` hands the
    connection back when the response ended cleanly, else closes it."""

    __slots__ = (
        "_conn",
        "_decoded",
        "_decoder",
        "_error",
        "_framed",
        "_interval",
        "_keep_alive",
        "_max_body",
        "_paused",
        "_pool",
        "_queue",
        "_queued",
        "_raw",
        "_received",
        "_seen",
        "_waiter",
        "_watchdog",
        "_whole",
        "complete",
        "head_bytes",
        "head_ready",
        "headers",
        "push",
        "status",
    )

    def __init__(self, conn: Carrier, pool: Owner, read_timeout: float) -> None:
        self._conn: Carrier | None = conn
        self._pool = pool
        self._max_body = pool.max_body
        self._interval = read_timeout / 2
        self.head_ready: asyncio.Future[None] = pool.loop.create_future()
        self._raw: list[tuple[bytes, bytes]] = []
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued = self._received = 0
        self._seen = -1
        self._waiter: asyncio.Future[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._error: HttpError | None = None
        self._keep_alive = self._paused = self._whole = self.complete = False
        self._framed = False
        self._decoder: Any = None  # a zlib decompressobj when the body is compressed
        self._decoded = 0
        self.head_bytes = 0  # bytes received before the head was whole
        self.push: Callable[[bytes], bool | None] | None = None  # see ``push_to``
        self.status = 0
        self.headers: Mapping[str, str] = CIMultiDict()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._raw.clear()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw.append((name, value))

    def on_headers_complete(self) -> None:
        conn = self._conn
        if conn is None or conn.parser is None:
            return
        parser = conn.parser
        status = parser.get_status_code()
        if status < 200:  # 100 Continue and the like: the real head follows
            return
        self.status = status
        self.headers = CIMultiDict(
            [(name.decode("latin-1"), value.decode("latin-1")) for name, value in self._raw]
        )
        self._keep_alive = parser.should_keep_alive()
        headers = self.headers
        self._framed = "Content-Length" in headers or "Transfer-Encoding" in headers
        coding = headers.get("Content-Encoding")
        if coding is not None and coding.strip().lower() not in ("", "identity"):
            self._decode_as(coding.strip().lower())
        if not self.head_ready.done():
            self.head_ready.set_result(None)

    def _decode_as(self, coding: str) -> None:
        wbits = _CODINGS.get(coding)
        if wbits is None:
            self.fail(
                BadResponse(f"the provider answered in a coding llmgw cannot read ({coding[:40]})")
            )
            return
        self._decoder = zlib.decompressobj(wbits)
        headers = self.headers
        assert isinstance(headers, CIMultiDict)
        headers.popall("Content-Encoding")
        headers.popall("Content-Length", None)  # the encoded length: not the body's

    def _decode(self, body: bytes) -> bytes:
        try:
            plain: bytes = self._decoder.decompress(body, self._max_body - self._decoded + 1)
        except zlib.error:
            self.fail(BadResponse("the provider's compressed body is corrupt"))
            return b""
        self._decoded += len(plain)
        if self._decoded > self._max_body:
            self.fail(BodyTooLarge("the decoded body is over the size limit"))
            return b""
        return plain

    def on_body(self, body: bytes) -> None:
        if self._decoder is not None:
            if self._error is not None:
                return
            body = self._decode(body)
            if not body:
                return
        self._queue.append(body)
        size = len(body)
        self._queued += size
        self._received += size
        if self._whole:
            if self._queued > self._max_body:
                self.fail(BodyTooLarge("the body is over the size limit"))
            return
        if self._queued > HIGH_WATER and not self._paused and self._conn is not None:
            self._paused = True
            self._conn.transport.pause_reading()
        if self.push is None:  # else ``flush`` wakes the reader, if it has to
            self._wake()

    def on_message_complete(self) -> None:
        if self.status and self._error is None:  # not a 1xx, not cut short by a limit
            self._end()

    def _end(self) -> None:
        decoder = self._decoder
        if decoder is not None and not decoder.eof:
            self.fail(BadResponse("the provider's compressed body was cut off"))
            return
        self.complete = True
        self._wake()

    # from the connection
    def fail(self, error: HttpError) -> None:
        """The response cannot go on: waiters get ``error``, the connection closes."""
        if self._error is None and not self.complete:
            self._error = error
            if not self.head_ready.done():
                self.head_ready.set_exception(error)
            self._wake()
        if self._conn is not None:
            self._conn.close()

    def head_late(self) -> None:
        self.fail(HeadTimeout("no response head within the head timeout"))

    def connection_lost(self, exc: BaseException | None = None) -> None:
        """The connection ended. A body without a length ends where the connection
        does, but only when it was closed: a reset (``exc``) cut it short."""
        if self.complete or self._error is not None:
            return
        if self.status and not self._framed and exc is None:
            self._end()
        elif self.status:
            self.fail(Disconnected("the connection closed before the response was whole"))
        elif isinstance(exc, ssl.SSLError):  # TLS 1.3: a refused client certificate
            self.fail(http_tls.failure(exc))
        elif isinstance(exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
            self.fail(ConnectReset("the provider reset the connection before answering"))
        else:
            self.fail(NoResponse("the connection closed before the response's head"))

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        if self._paused and self._conn is not None:
            self._paused = False
            self._conn.transport.resume_reading()
        self._waiter = waiter = self._pool.loop.create_future()
        await waiter

    def start(self) -> None:
        """The head is in: from now on the body must keep arriving."""
        if not self.complete and self._error is None:
            self._watchdog = self._pool.loop.call_later(self._interval, self._watch)

    def _watch(self) -> None:
        """Fires every half read timeout: no new byte since the last look, and the
        silence has lasted at least the read timeout (at most 1.5 times it)."""
        if self.complete or self._error is not None:
            return
        if self._received == self._seen:
            self.fail(ReadTimeout("no bytes within read_timeout"))
            return
        self._seen = self._received
        self._watchdog = self._pool.loop.call_later(self._interval, self._watch)

    @property
    def at_end(self) -> bool:
        """The body is all in and ``chunks()`` handed all of it out."""
        return self.complete and not self._queue

    def flush(self) -> None:
        """After each read from the socket while ``push`` is set: what it brought (and
        anything still queued, in order) goes to ``push`` at once, as one piece; if
        ``push`` refuses it, the reader is woken to take it from the queue instead; so
        it is for the body's last piece (the reader may write it with its own end)."""
        queue, push = self._queue, self.push
        if not queue or push is None:
            return
        if self.complete:  # the body's last piece: the reader takes it with the end
            self._wake()
            return
        chunk = queue[0] if len(queue) == 1 else b"".join(queue)
        taken = push(chunk)
        if taken:
            queue.clear()
            self._queued = 0
        elif taken is None:  # taken, but the reader has work left: its cue is an empty piece
            queue.clear()
            queue.append(b"")
            self._queued = 0
            self.push = None
            self._wake()
        else:
            self._wake()

    # the reader's side
    def push_to(self, consumer: Callable[[bytes], bool | None] | None) -> bool:
        """Hand the body to ``consumer`` as it arrives, in the connection's callback,
        one piece per read from the socket (what ``chunks()`` would have returned),
        instead of waking the reader for each: ``consumer`` returns False to refuse
        a piece, which then waits in the queue for ``chunks()``, and no piece is
        handed over while one waits there; it returns None when it took the piece
        but left work for the reader: pushing stops (as ``push_to(None)``) and the
        reader is woken, ``chunks()`` yielding an empty piece (or what came since).
        The reader still learns of the body's end and of failures from ``chunks()``.
        ``None``: back to queueing alone. Always True: this response can push (the
        protocol's other side may not)."""
        self.push = consumer
        return True

    async def read(self) -> bytes:
        """The whole body; ``BodyTooLarge`` past ``max_body`` (declared or received)."""
        declared = self.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self._max_body:
            self.fail(BodyTooLarge("the declared body is over the size limit"))
        self._whole = True
        if self._queued > self._max_body:
            self.fail(BodyTooLarge("the body is over the size limit"))
        while not self.complete:
            if self._error is not None:
                raise self._error
            await self._wait()
        queue = self._queue
        body = queue[0] if len(queue) == 1 else b"".join(queue)
        queue.clear()
        self._queued = 0
        return body

    def chunks(self) -> Response:
        return self

    def __aiter__(self) -> Response:
        return self

    async def __anext__(self) -> bytes:
        queue = self._queue
        while not queue:
            if self._error is not None:
                raise self._error
            if self.complete:
                raise StopAsyncIteration
            await self._wait()
        chunk = queue[0] if len(queue) == 1 else b"".join(queue)
        queue.clear()
        self._queued = 0
        return chunk

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        conn, self._conn = self._conn, None
        if conn is None:
            return
        conn.response = conn.parser = None  # no cycle left for the garbage collector
        if self.complete and self._keep_alive and not conn.closed:
            if self._paused:
                conn.transport.resume_reading()
            self._pool.release(conn)
        else:
            conn.close()
