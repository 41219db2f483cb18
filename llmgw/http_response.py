"""A provider's response as the HTTP/1.1 client hands it over, and the client's errors.

``Response`` is the httptools parser's callback target while the body arrives, and the
reader's side: ``read()`` for the whole body, ``chunks()`` for pieces as they come.
The connection and its pool (``http_client``) feed it and take the connection back.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Mapping
from typing import TYPE_CHECKING

from multidict import CIMultiDict

if TYPE_CHECKING:
    from .http_client import Connection, Pool

HIGH_WATER = 256 * 1024  # bytes a slow reader may leave queued before reading pauses


class HttpError(Exception):
    """A request failed below HTTP semantics."""


class ConnectError(HttpError):
    """No connection could be opened."""


class NoResponse(HttpError):
    """The connection closed, broke or carried no HTTP/1.1 before the response's head."""


class Disconnected(HttpError):
    """The connection closed or broke after the head, before the body was whole."""


class BadResponse(HttpError):
    """The body's framing was not HTTP/1.1 (a broken chunk, say)."""


class InvalidRequest(HttpError):
    """The request cannot be written: a header holds a line break."""


class BodyTooLarge(HttpError):
    """A body read whole went over the pool's ``max_body``."""


class ReadTimeout(HttpError, TimeoutError):
    """No byte of the body arrived within the read timeout."""


class HeadTimeout(HttpError, TimeoutError):
    """The connection and the response's head took longer than the head timeout."""


class Response:
    """One response: ``status`` and ``headers`` once they arrived, then the body by
    ``read()`` (whole) or ``chunks()`` (as it arrives); ``close()`` hands the
    connection back when the response ended cleanly, else closes it."""

    __slots__ = (
        "_conn",
        "_error",
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
        "head_ready",
        "headers",
        "status",
    )

    def __init__(self, conn: Connection, pool: Pool, read_timeout: float) -> None:
        self._conn: Connection | None = conn
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
        if not self.head_ready.done():
            self.head_ready.set_result(None)

    def on_body(self, body: bytes) -> None:
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
        self._wake()

    def on_message_complete(self) -> None:
        if self.status and self._error is None:  # not a 1xx, not cut short by a limit
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

    def connection_lost(self) -> None:
        if self.status and not self.complete and self._until_close():
            self.complete = True  # a body without a length ends where the connection does
            self._wake()
        elif self.status:
            self.fail(Disconnected("the connection closed before the response was whole"))
        else:
            self.fail(NoResponse("the connection closed before the response's head"))

    def _until_close(self) -> bool:
        headers = self.headers
        return "Content-Length" not in headers and "Transfer-Encoding" not in headers

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

    # the reader's side
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
