"""Writes to the client, bounded by ``server.write_timeout``.

aiohttp's ``StreamResponse.write`` hands bytes to the transport and, once the
transport's buffer is over its high-water mark (the client reads slower than the
gateway writes), waits for it to drain: without a limit. A client that stops reading
would hold its request there for ever, and with it the provider's slot and the
concurrency limits. ``Sink.write`` bounds that wait: a write that makes no progress
(the transport's buffer does not shrink) for ``write_timeout`` raises
``ClientStalled``; the caller ends the response with ``abort``.

Per chunk the common case costs two reads of the transport's state and no coroutine
of its own (``write`` hands back aiohttp's): a timer is armed only for a write that may
have to wait (the transport is paused already, or this write could take its buffer over
the high-water mark).

A stream's pieces may also be ``push``ed: handed to the transport at once, from the
provider connection's callback, when the write could not have to wait (the same test);
the relay then needs no wake-up of its own per piece (``relay.passthrough``, and
``relay.translated`` for a translator's output).

The relay writes an answer through ``answer.Answer``, whose client side is a ``Sink``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any

from aiohttp import web
from aiohttp.http_writer import StreamWriter

_FRAMING = 4096  # more than aiohttp adds to a write: chunk framing, the buffered head


class Stream(web.StreamResponse):
    """A streamed response whose head leaves with its first write, in one system call.
    aiohttp sends a ``StreamResponse``'s head on its own at ``prepare`` (its
    ``Response`` buffers it the same way); the gateway prepares a stream only when its
    first bytes are at hand (the provider's first event, a recorded chunk, a stored
    answer), so waiting for them delays nothing."""

    _send_headers_immediately = False  # aiohttp's switch (web_response.py)


class ClientStalled(ConnectionResetError):
    """The client read nothing of its response for ``write_timeout``."""


class Sink:
    """A response's writes, each allowed ``timeout`` seconds without progress."""

    __slots__ = ("_direct", "_high", "_protocol", "_request", "_timeout", "_transport", "out")

    out: web.StreamResponse  # set by ``prepare``

    def __init__(self, request: web.BaseRequest, timeout: float) -> None:
        self._request = request
        self._timeout = timeout
        self._transport = request.transport
        self._protocol = request.protocol
        self._high = _high_water(self._transport)
        self._direct: StreamWriter | None = None  # aiohttp's writer, once ``pushable``

    async def prepare(self, out: web.StreamResponse) -> None:
        """Send ``out``'s head (its headers decided): the writes that follow are its body."""
        await out.prepare(self._request)
        self.out = out

    def write(self, data: bytes) -> Awaitable[None]:
        # ``_may_block`` inline, cheapest test first: this runs for every chunk.
        transport = self._transport
        if (
            transport is not None
            and (
                self._protocol.writing_paused
                or transport.get_write_buffer_size() + len(data) + _FRAMING > self._high
            )
            and not transport.is_closing()
        ):
            return self._bounded(self.out.write(data))
        return self.out.write(data)

    def pushable(self) -> bool:
        """Whether ``push`` may be used from now on: after the response's first write,
        when its writer is aiohttp's own, writing a chunked body with nothing between
        (no compression, no wrapper rewriting the body, no hook per chunk)."""
        writer = getattr(self.out, "_payload_writer", None)
        if (
            type(writer) is not StreamWriter
            or not writer.chunked
            or writer.length is not None
            or getattr(writer, "_compress", True) is not None
            or getattr(writer, "_on_chunk_sent", True) is not None
            or getattr(writer, "on_body_write", True) is not None
            or getattr(writer, "_headers_buf", True) is not None  # the head is out
            or getattr(writer, "_eof", True)
            or self._transport is None
        ):
            return False
        self._direct = writer
        return True

    def ready(self, size: int) -> bool:
        """Whether ``size`` more bytes can go to the transport without a wait."""
        transport = self._transport
        return (
            transport is not None
            and not self._protocol.writing_paused
            and transport.get_write_buffer_size() + size + _FRAMING <= self._high
            and not transport.is_closing()
        )

    def push(self, data: bytes) -> bool:
        """``data`` to the client now, if no wait could be needed (``pushable`` said
        yes); False: nothing was done (``write`` it)."""
        if self._direct is None or not self.ready(len(data)):
            return False
        self._send(data)
        return True

    def _send(self, data: bytes) -> None:
        """One chunk of the chunked body, framed as aiohttp frames it, in one write; its
        writer's count of bytes sent kept true. (aiohttp's own framing costs ~1 us more
        a piece: a format string, a tuple, a loop and a join.)"""
        transport, writer = self._transport, self._direct
        assert transport is not None and writer is not None  # ``pushable`` said so
        framed = b"%x\r\n%b\r\n" % (len(data), data)
        transport.write(framed)
        writer.output_size += len(framed)

    async def write_eof(self, data: bytes = b"") -> None:
        """The end of the response, ``data`` its last bytes (one system call for both)."""
        if self._may_block(len(data)):
            await self._bounded(self.out.write_eof(data))
        else:
            await self.out.write_eof(data)

    def abort(self) -> None:
        """End the response now; what the stalled client was not sent is dropped."""
        if self._transport is not None:
            self._transport.abort()

    def _may_block(self, size: int) -> bool:
        transport = self._transport
        if transport is None or transport.is_closing():
            return False  # the write fails at once
        if self._protocol.writing_paused:
            return True
        return transport.get_write_buffer_size() + size + _FRAMING > self._high

    async def _bounded(self, write: Coroutine[Any, Any, None]) -> None:
        transport = self._transport
        assert transport is not None
        try:
            async with asyncio.timeout(None) as deadline:
                watch = _Watch(transport, deadline, self._timeout)
                try:
                    await write
                finally:
                    watch.stop()
        except TimeoutError:
            raise ClientStalled(f"the client read nothing for {self._timeout:g}s") from None


class _Watch:
    """Expires ``deadline`` once the transport's buffer stopped shrinking for ``timeout``."""

    __slots__ = ("_deadline", "_handle", "_last", "_loop", "_timeout", "_transport")

    def __init__(
        self, transport: asyncio.Transport, deadline: asyncio.Timeout, timeout: float
    ) -> None:
        self._transport = transport
        self._deadline = deadline
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._last = transport.get_write_buffer_size()
        self._handle = self._loop.call_later(timeout, self._check)

    def _check(self) -> None:
        size = self._transport.get_write_buffer_size()
        if size < self._last:  # the client read some: it gets another while
            self._last = size
            self._handle = self._loop.call_later(self._timeout, self._check)
        else:
            self._deadline.reschedule(self._loop.time())

    def stop(self) -> None:
        self._handle.cancel()


def _high_water(transport: asyncio.Transport | None) -> int:
    """The buffer size over which the transport pauses writers (0: assume any write may)."""
    if transport is None:
        return 0
    try:
        return transport.get_write_buffer_limits()[1]
    except (AttributeError, NotImplementedError):
        return 0
